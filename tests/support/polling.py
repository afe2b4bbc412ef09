"""Waiting for something a real process does in its own time."""

from __future__ import annotations

import subprocess
import time
import urllib.request
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


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until `url` answers 200; gives up at once if the server process exits."""

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(healthy, url, timeout, interval=1.0)
