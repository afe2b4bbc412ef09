"""A small thread-safe in-process LRU memo (what `functools.lru_cache` would be on a method,
without keeping the instance alive or sharing one cache between instances), bounded by entries
and, when asked, by bytes: a caller chooses what is memoised (a file, a dataset), so a count
alone would let a few large values take the process's memory."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

Value = TypeVar("Value")
SAMPLED = 16  # a long list is sized from its first items: a dataset's instances are alike
DEEPEST = 6


def approximate_bytes(value: object, depth: int = 0) -> int:
    """What a value holds in memory, roughly: arrays by their buffers, containers and
    dataclasses by their parts (a long sequence by a sample), anything else by getsizeof."""
    if isinstance(value, np.ndarray):
        return value.nbytes + 112
    own = sys.getsizeof(value)
    if depth >= DEEPEST or isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return own
    if isinstance(value, dict):
        return own + sum(approximate_bytes(k, depth + 1) + approximate_bytes(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        sample = value[:SAMPLED]
        sampled = sum(approximate_bytes(item, depth + 1) for item in sample)
        return own + (sampled * len(value) // len(sample) if sample else 0)
    if dataclasses.is_dataclass(value):
        return own + sum(approximate_bytes(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    return own


class Memo(Generic[Value]):
    """At most `maxsize` entries and, with `max_bytes`, at most that many bytes (a value larger
    than that alone is returned and not kept)."""

    def __init__(self, maxsize: int, max_bytes: int = 0):
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Value, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        value = compute()  # outside the lock: a slow computation must not block other keys
        size = approximate_bytes(value) if self.max_bytes else 0
        if self.max_bytes and size > self.max_bytes:
            return value
        with self._lock:
            self._drop(key)
            self._entries[key] = (value, size)
            self._bytes += size
            while len(self._entries) > self.maxsize or (self.max_bytes and self._bytes > self.max_bytes):
                self._drop(next(iter(self._entries)))
        return value

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._drop(key)

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def _drop(self, key: Hashable) -> None:
        if key in self._entries:
            self._bytes -= self._entries.pop(key)[1]
