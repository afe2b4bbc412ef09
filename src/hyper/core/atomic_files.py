"""Writing files so that a reader never sees half of one: a temporary file, then a rename.

Every file the project writes for others to read (results, artifacts, caches, specs) goes
through here. Temporary names are unique per writer (random, so pods sharing a volume cannot
collide), so concurrent writers of one path never clobber each other's half-written file; the
last complete one wins. The content is flushed to disk before the rename and the rename after
it (fsync of the file, then of its directory): after a node crash a reader finds the old file or
the new one, never an empty one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _sync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path`'s content to; renamed into place if the block succeeds,
    removed if it fails (for writers that take a path, such as np.savez)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        yield tmp
        _sync_file(tmp)
        os.replace(tmp, path)
        _sync_directory(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A temporary directory that replaces the directory `path` once the block succeeds (the
    old one, if any, is removed after the swap); removed if the block fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _temporary(path), _temporary(path.with_name(path.name + ".old"))
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", permissions: int | None = None) -> Iterator[IO[Any]]:
    """An open file whose content replaces `path` only once it is completely written
    (`permissions`: set before anything is written, for secrets)."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        if permissions is not None:
            os.fchmod(handle.fileno(), permissions)
        yield handle


def write_text_atomic(path: str | Path, text: str, permissions: int | None = None) -> None:
    with atomic_open(path, permissions=permissions) as handle:
        handle.write(text)


def write_json_atomic(path: str | Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


def create_once(path: str | Path, text: str) -> bool:
    """Writes `path` only if it does not exist yet, atomically: True if this call created it.

    A hard link of a complete temporary file fails when the target exists, which makes the
    first writer win for good (exactly-once records) without locks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        tmp.write_text(text)
        _sync_file(tmp)
        os.link(tmp, path)
        _sync_directory(path.parent)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)  # also when the disk is full: no temporary file is left
