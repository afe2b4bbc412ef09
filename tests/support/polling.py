"""Waiting for something a real process does in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 60, interval: float = 0.3) -> T:
    """Calls `condition` until it returns something truthy, and returns that; TimeoutError
    naming `what` after `timeout` seconds. A condition may raise to give up at once."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
