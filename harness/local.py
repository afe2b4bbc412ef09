"""This checkout on this machine: its data files, free loopback ports, and settings for services
started on them."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from pathlib import Path

from hyper.core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
HH_DATA = REPO / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def local_settings(home: Path) -> Settings:
    ports = free_ports(6)
    # Datasets of the tests: the repository's and pytest's temporary directories.
    return Settings(home=home, tagger_port=ports[0], ppm_port=ports[1], router_port=ports[2],
                    tagger_metrics_port=ports[3], ppm_metrics_port=ports[4],
                    router_metrics_port=ports[5],
                    data_roots=os.pathsep.join([str(REPO), tempfile.gettempdir()]))


@contextlib.contextmanager
def ppm_server(directory: Path, **settings_update):
    """A ppm server in this process with these settings, stopped at the end."""
    from hyper_ppm.server import build

    settings = local_settings(directory / "home").model_copy(update={"ppm_metrics_port": 0, **settings_update})
    server = build(settings)
    server.start()
    try:
        yield settings
    finally:
        server.grpc.stop(0)
