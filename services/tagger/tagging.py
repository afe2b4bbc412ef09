"""The tagger's core: values per instance (cached by content), binned per dataset.

What is cached per instance is its raw textual values followed by its descriptive-tag bits;
binning the textual values needs the whole dataset (length features are percentile ranks), so
it happens on every request, after the cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from hyper.catalogue import FEATURE_NAMES, feature_set_version
from hyper.embeddings import SentenceEmbedder
from hyper.features import FeatureMatrix, binarize
from hyper.schema import Instance
from hyper.tagger.cache import FeatureCache
from hyper.tagger.descriptive import DESCRIPTIVE_FEATURES, DescriptiveBackend, descriptive_columns
from hyper.tagger.textual import RAW_DIMENSIONS, raw_textual_values

log = logging.getLogger(__name__)

CACHED_WIDTH = len(RAW_DIMENSIONS) + len(DESCRIPTIVE_FEATURES)


@dataclass
class TagResult:
    features: FeatureMatrix
    raw: np.ndarray  # (n, len(RAW_DIMENSIONS)) unbinned textual values
    cache_hits: int
    cache_misses: int


class Tagger:
    def __init__(self, embedder: SentenceEmbedder, ner, descriptive: DescriptiveBackend,
                 cache: FeatureCache):
        self.embedder = embedder
        self.ner = ner
        self.descriptive = descriptive
        self.version = feature_set_version(descriptive.name)
        self.cache = cache

    def _compute(self, instances: list[Instance]) -> np.ndarray:
        textual = raw_textual_values(instances, self.embedder, self.ner)
        tags = self.descriptive.tag([i.prompt for i in instances])
        return np.hstack([textual, tags.astype(np.float64)])

    def cached_values(self, instances: list[Instance]) -> tuple[np.ndarray, int]:
        """Every instance's cached row, computing only the missing ones; and the miss count."""
        keys = [i.content_key() for i in instances]
        values, missing = self.cache.get_many(keys)
        if missing:
            fresh = self._compute([instances[i] for i in missing])
            values[missing] = fresh
            self.cache.put_many([keys[i] for i in missing], fresh)
        return values.astype(np.float64), len(missing)

    def tag(self, instances: list[Instance]) -> TagResult:
        values, misses = self.cached_values(instances)
        raw = values[:, : len(RAW_DIMENSIONS)]
        numeric = {name: raw[:, j] for j, name in enumerate(RAW_DIMENSIONS)}
        # The judge's confidence belongs to the labels, not the text: binned here, never cached.
        numeric["judge_confidence"] = np.array([np.nan if i.judge_confidence is None else i.judge_confidence
                                                for i in instances])
        bits = binarize(numeric, len(instances))
        bits[:, descriptive_columns()] = values[:, len(RAW_DIMENSIONS):].astype(np.uint8)
        matrix = FeatureMatrix([i.id for i in instances], list(FEATURE_NAMES), bits, self.version)
        log.info("tagged", extra={"n_instances": len(instances), "cache_misses": misses})
        return TagResult(matrix, raw, len(instances) - misses, misses)
