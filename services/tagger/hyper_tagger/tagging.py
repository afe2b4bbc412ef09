"""The tagger's core: values per instance (cached by content), binned per dataset.

What is cached per instance is its raw textual values followed by its descriptive-tag bits;
binning the textual values needs the whole dataset (length features are percentile ranks), so
it happens on every request, after the cache.

Misses are computed and committed to the cache a chunk at a time: a crash or restart loses at
most the chunk in flight, and the same request sent again computes only what was not committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hyper.core.catalogue import FEATURE_NAMES, feature_set_version
from hyper.core.errors import CallerGone, HyperError
from hyper.core.features import FeatureMatrix, binarize
from hyper.core.schema import Instance, judge_confidences
from hyper.core.settings import Settings
from hyper.method.embeddings import SentenceEmbedder
from hyper_tagger.cache import FeatureCache
from hyper_tagger.descriptive import DESCRIPTIVE_FEATURES, DescriptiveBackend, descriptive_span
from hyper_tagger.textual import RAW_DIMENSIONS, ner_identity, raw_textual_values

log = logging.getLogger(__name__)

CACHED_WIDTH = len(RAW_DIMENSIONS) + len(DESCRIPTIVE_FEATURES)
CHUNK_SIZE = Settings.model_fields["tagging_chunk_size"].default


def features_version(embedder: SentenceEmbedder, ner, descriptive: DescriptiveBackend) -> str:
    """The feature-set version these models compute: the cache key's namespace."""
    return feature_set_version(descriptive.name, (embedder.identity, ner_identity(ner)))


@dataclass
class TagResult:
    features: FeatureMatrix
    raw: np.ndarray  # (n, len(RAW_DIMENSIONS)) unbinned textual values
    cache_hits: int
    cache_misses: int


class Tagger:
    def __init__(self, embedder: SentenceEmbedder, ner, descriptive: DescriptiveBackend,
                 cache: FeatureCache, chunk_size: int = CHUNK_SIZE):
        self.embedder = embedder
        self.ner = ner
        self.descriptive = descriptive
        self.version = features_version(embedder, ner, descriptive)
        # The version is a hash; the log says what it stands for, for whoever compares two.
        log.info("feature set", extra={"version": self.version, "descriptive_tags": descriptive.name,
                                       "sentence_model": embedder.identity, "ner": ner_identity(ner)})
        self.cache = cache
        self.chunk_size = chunk_size

    def _compute(self, instances: list[Instance]) -> np.ndarray:
        textual = raw_textual_values(instances, self.embedder, self.ner)
        tags = self.descriptive.tag([i.prompt for i in instances])
        return np.hstack([textual, tags.astype(np.float64)])

    def cached_values(self, instances: list[Instance], caller_waiting: Callable[[], bool] = lambda: True,
                      ) -> tuple[np.ndarray, int]:
        """Every instance's cached row, computing only the missing ones; and the miss count.
        Stops (CallerGone) between chunks once `caller_waiting()` is false."""
        keys = [i.content_key() for i in instances]
        values, missing = self.cache.get_many(keys)
        positions: dict[str, list[int]] = {}  # identical pairs are computed once
        for i in missing:
            positions.setdefault(keys[i], []).append(i)
        self._compute_in_chunks(instances, positions, values, caller_waiting)
        return values.astype(np.float64), len(missing)

    def _compute_in_chunks(self, instances: list[Instance], positions: dict[str, list[int]],
                           values: np.ndarray, caller_waiting: Callable[[], bool]) -> None:
        """Fills `values` at the missing positions, committing each chunk to the cache."""
        pending = list(positions)
        began = time.monotonic()
        for start in range(0, len(pending), self.chunk_size):
            # A cancelled call (its deadline, the client, a server draining for shutdown) would
            # otherwise compute on for nobody and hold the process; what is committed stays.
            if not caller_waiting():
                log.info("tagging stopped: the caller is gone", extra={"done": start, "total": len(pending)})
                raise CallerGone(f"the caller stopped waiting after {start} of {len(pending)} pairs were tagged "
                                 "(they are cached)")
            chunk = pending[start:start + self.chunk_size]
            fresh = self._compute([instances[positions[key][0]] for key in chunk])
            self.cache.put_many(chunk, fresh)
            for key, row in zip(chunk, fresh, strict=True):
                values[positions[key]] = row
            done, seconds = start + len(chunk), time.monotonic() - began
            log.info("tagging chunk committed", extra={"done": done, "total": len(pending),
                                                       "pairs_per_second": round(done / max(seconds, 1e-9), 1)})

    def tag(self, instances: list[Instance], caller_waiting: Callable[[], bool] = lambda: True) -> TagResult:
        values, misses = self.cached_values(instances, caller_waiting)
        confidence = judge_confidences(instances)
        matrix = FeatureMatrix([i.id for i in instances], list(FEATURE_NAMES), self.binned(values, confidence),
                               self.version)
        log.info("tagged", extra={"n_instances": len(instances), "cache_misses": misses})
        return TagResult(matrix, values[:, : len(RAW_DIMENSIONS)], len(instances) - misses, misses)

    def tag_cached(self, keys: list[str], confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The binary features and raw values of a dataset whose pairs are all cached, named by
        content key (a client of a large file sends keys, not text)."""
        values, missing = self.cache.get_many(keys)
        if missing:
            raise HyperError(f"{len(missing)} of {len(keys)} keys have no cached features (first: row "
                             f"{missing[0]}, key {keys[missing[0]]}): tag those pairs first")
        log.info("tagged cached", extra={"n_instances": len(keys)})  # (values stay float32, as cached)
        return self.binned(values, confidence), values[:, : len(RAW_DIMENSIONS)]

    @staticmethod
    def binned(values: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """The dataset's binary features from its cached rows (textual values binned within
        the dataset, descriptive bits as they are) and the judge's confidence per pair."""
        raw = values[:, : len(RAW_DIMENSIONS)]
        numeric = {name: raw[:, j] for j, name in enumerate(RAW_DIMENSIONS)}
        # The judge's confidence belongs to the labels, not the text: binned here, never cached.
        numeric["judge_confidence"] = confidence
        bits = binarize(numeric, len(values))
        bits[:, descriptive_span()] = values[:, len(RAW_DIMENSIONS):].astype(np.uint8)
        return bits
