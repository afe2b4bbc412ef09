"""Process-wide helpers for the few places that make or read a million things at once."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

Item = TypeVar("Item")

_pause_lock = threading.Lock()
_pause_holders = 0
_resume_when_released = False


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while many acyclic objects are made (a block of a
    large file's pairs): its passes over a growing heap took a fifth of reading a million rows.
    Shared by threads (a collector paused by one Route stays paused until the last one leaves),
    and a collector that was already disabled stays disabled."""
    global _pause_holders, _resume_when_released
    with _pause_lock:
        if _pause_holders == 0:
            _resume_when_released = gc.isenabled()
            gc.disable()
        _pause_holders += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pause_holders -= 1
            if _pause_holders == 0 and _resume_when_released:
                gc.enable()


def read_ahead(items: Iterator[Item]) -> Iterator[Item]:
    """`items`, the next one made in a thread while the caller works on this one (worth it when
    making one releases the interpreter, as Arrow's parsers do)."""
    done = object()
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as worker:
        upcoming = worker.submit(next, items, done)
        while (item := upcoming.result()) is not done:
            upcoming = worker.submit(next, items, done)
            yield cast(Item, item)
