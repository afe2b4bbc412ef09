"""The images the test node needs besides ours, made here from Debian's packages (no registry
can be reached): the pod sandbox (harness/node/pause.c, built static) and Redis (Debian's
redis-server, for the chart's Redis StatefulSet)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from scripts import images

PAUSE_SOURCE = Path(__file__).with_name("pause.c")
PAUSE_IMAGE = "localhost/hyper-pause:local"
REDIS_IMAGE = "localhost/hyper-redis:local"


def pause_image() -> str:
    if not images.exists(PAUSE_IMAGE):
        with tempfile.TemporaryDirectory() as scratch:
            binary = Path(scratch) / "pause"
            subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(PAUSE_SOURCE)], check=True)
            tarball = Path(scratch) / "pause.tar"
            subprocess.run(["tar", "-C", scratch, "-cf", str(tarball), "pause"], check=True)
            images.podman("import", "--change", 'ENTRYPOINT ["/pause"]', str(tarball), PAUSE_IMAGE, capture=True)
    return PAUSE_IMAGE


def redis_image() -> str:
    """Debian bookworm (minbase) with redis-server as its entry point: the chart passes only
    arguments, as to the official image."""
    if not images.exists(REDIS_IMAGE):
        images.CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=images.CACHE) as scratch:
            rootfs = Path(scratch) / "rootfs"
            subprocess.run(["debootstrap", "--variant=minbase", "--include=redis-server", "bookworm", str(rootfs),
                            images.MIRROR], check=True, capture_output=True)
            shutil.rmtree(rootfs / "var" / "cache" / "apt", ignore_errors=True)
            shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
            tarball = Path(scratch) / "rootfs.tar"
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
            images.podman("import", "--change", 'ENTRYPOINT ["redis-server"]', str(tarball), REDIS_IMAGE,
                          capture=True)
    return REDIS_IMAGE
