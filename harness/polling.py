"""Waiting for something a real process does in its own time."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
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


@contextlib.contextmanager
def server_process(command: list[str], env: dict, health_url: str, log: Path | None = None, cwd: Path | None = None,
                   timeout: float = 300) -> Iterator[subprocess.Popen]:
    """A server started as its own process, healthy before the block runs, stopped after it."""
    with open(log or "/dev/null", "w") as output:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_healthy(health_url, process, timeout)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)
