"""Small in-process LRU memos: the router re-reads a dataset file or re-asks the tagger only
when the file or the tagger's feature set has changed."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

from hyper.v1 import common_pb2

Value = TypeVar("Value")


class Memo:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = compute()  # outside the lock: a slow computation must not block other keys
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return value


def file_identity(ref: common_pb2.DatasetRef) -> tuple | None:
    """What decides a dataset read from a file: the file's identity and how it is read.
    None when the file cannot be stat'ed (reading it then reports the error)."""
    try:
        stat = os.stat(ref.path)
    except OSError:
        return None
    return (os.path.realpath(ref.path), stat.st_mtime_ns, stat.st_size, ref.format,
            tuple(sorted(ref.columns.items())), ref.skip_bad_rows)
