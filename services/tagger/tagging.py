"""The tagger's core: raw values per instance (cached by content), binned per dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
import numpy as np

from hyper.catalogue import FEATURE_NAMES, feature_set_version
from hyper.embeddings import SentenceEmbedder
from hyper.features import FeatureMatrix, binarize
from hyper.schema import Instance
from hyper.tagger.textual import RAW_DIMENSIONS, raw_textual_values
from hyper.tagger.cache import FeatureCache

log = logging.getLogger(__name__)


@dataclass
class TagResult:
    features: FeatureMatrix
    raw: np.ndarray  # (n, len(RAW_DIMENSIONS))
    cache_hits: int
    cache_misses: int


class Tagger:
    def __init__(self, embedder: SentenceEmbedder, cache: FeatureCache, ner):
        self.embedder = embedder
        self.ner = ner
        self.version = feature_set_version()
        self.cache = cache

    def raw_values(self, instances: list[Instance]) -> tuple[np.ndarray, int]:
        """Raw values for every instance, computing only those not cached; and the miss count."""
        keys = [i.content_key() for i in instances]
        raw, missing = self.cache.get_many(keys)
        if missing:
            fresh = raw_textual_values([instances[i] for i in missing], self.embedder, self.ner)
            raw[missing] = fresh
            self.cache.put_many([keys[i] for i in missing], fresh)
        return raw.astype(np.float64), len(missing)

    def tag(self, instances: list[Instance]) -> TagResult:
        raw, misses = self.raw_values(instances)
        columns = {name: raw[:, j] for j, name in enumerate(RAW_DIMENSIONS)}
        bits = binarize(columns, len(instances))
        matrix = FeatureMatrix([i.id for i in instances], list(FEATURE_NAMES), bits, self.version)
        log.info("tagged", extra={"n_instances": len(instances), "cache_misses": misses})
        return TagResult(matrix, raw, len(instances) - misses, misses)
