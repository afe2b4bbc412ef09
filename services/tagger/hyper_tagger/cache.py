"""The tagger's feature cache: raw values per instance, keyed by a content hash.

Redis when `HYPER_REDIS_URL` is set (shared by every tagger replica), local disk otherwise.
A cache is an optimisation, never a dependency: when Redis cannot be reached, tagging goes on
without it, and a metric and a log line say the cache was bypassed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
from prometheus_client import Counter

from hyper.core.vector_store import VectorStore

log = logging.getLogger(__name__)

CACHE_BYPASSED = Counter("hyper_tagger_cache_bypassed_total",
                         "Cache operations skipped because the cache could not be reached.",
                         ["operation"])


class FeatureCache(Protocol):
    def get_many(self, keys: list[str]) -> tuple[np.ndarray, list[int]]: ...

    def put_many(self, keys: list[str], vectors: np.ndarray) -> None:
        """Committed when it returns (a segment on disk, or the keys in Redis unless Redis was
        unreachable and bypassed): the tagger calls it once per chunk, so that a restart finds
        every chunk done before it."""


class DiskFeatureCache:
    def __init__(self, directory: Path, dim: int):
        self.store = VectorStore(directory, dim)

    def get_many(self, keys: list[str]) -> tuple[np.ndarray, list[int]]:
        return self.store.get_many(keys)

    def put_many(self, keys: list[str], vectors: np.ndarray) -> None:
        self.store.put_many(keys, vectors)
        self.store.flush()


class RedisFeatureCache:
    """One Redis string per instance: the float32 bytes of its raw values."""

    def __init__(self, url: str, namespace: str, dim: int, timeout_seconds: float = 2.0):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=timeout_seconds,
                                           socket_connect_timeout=timeout_seconds)
        self.namespace = namespace
        self.dim = dim
        # Unreachable, or reachable and refusing (protected mode, a password, out of memory, a
        # read-only replica): either way the cache is bypassed, never the tagging failed.
        self._errors = (redis.RedisError,)

    def _key(self, key: str) -> str:
        return f"hyper:features:{self.namespace}:{key}"

    def get_many(self, keys: list[str]) -> tuple[np.ndarray, list[int]]:
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        try:
            values = self.client.mget([self._key(k) for k in keys]) if keys else []
        except self._errors as error:
            self._bypassed("get", error)
            return out, list(range(len(keys)))
        missing = []
        for i, value in enumerate(values):
            if value is None or len(value) != 4 * self.dim:
                missing.append(i)
            else:
                out[i] = np.frombuffer(value, dtype=np.float32)
        return out, missing

    def put_many(self, keys: list[str], vectors: np.ndarray) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for key, vector in zip(keys, np.asarray(vectors, dtype=np.float32), strict=True):
                    pipe.set(self._key(key), vector.tobytes())
                pipe.execute()
        except self._errors as error:
            self._bypassed("put", error)

    def _bypassed(self, operation: str, error: Exception) -> None:
        CACHE_BYPASSED.labels(operation).inc()
        log.warning("feature cache bypassed: redis unreachable or refusing",
                    extra={"operation": operation, "error": str(error)})


def open_cache(redis_url: str, cache_dir: Path, namespace: str, dim: int) -> FeatureCache:
    if redis_url:
        return RedisFeatureCache(redis_url, namespace, dim)
    return DiskFeatureCache(Path(cache_dir) / "features" / namespace, dim)
