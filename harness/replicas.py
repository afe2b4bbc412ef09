"""Replicas of one service as real processes (`python -m hyper.<service>.server`), each with
its own settings (ports, home), started together and stopped at the end."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

from harness.polling import wait_for
from hyper.api import serving
from hyper.core.settings import Settings


@contextlib.contextmanager
def serving_replicas(service: str, replicas: list[Settings], timeout: float = 120) -> Iterator[list[Settings]]:
    """The replicas once each answers its health check as SERVING; a replica that exits during
    start-up fails at once."""
    processes = [subprocess.Popen([sys.executable, "-m", f"hyper_{service}.server"], env={**os.environ, **own.to_env()},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for own in replicas]
    try:
        for own, process in zip(replicas, processes, strict=True):
            wait_for(lambda own=own, process=process: _serving(service, own, process),
                     f"a {service} replica to serve", timeout=timeout)
        yield replicas
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def _serving(service: str, settings: Settings, process: subprocess.Popen) -> bool:
    assert process.poll() is None, f"a {service} replica exited during start-up"
    return serving.health_status(settings.address(service), settings) == "SERVING"
