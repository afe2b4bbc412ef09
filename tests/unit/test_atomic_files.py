"""Files others read are replaced whole and durably: flushed before the rename, the rename
flushed after it, and nothing left behind when a write fails."""

import os
from pathlib import Path

import pytest

from hyper.core import atomic_files
from hyper.core.atomic_files import create_once, write_json_atomic


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """What os.fsync was called on: 'file' or 'directory'."""
    calls: list[str] = []
    real = os.fsync

    def recording(descriptor: int) -> None:
        calls.append("directory" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "file")
        real(descriptor)

    monkeypatch.setattr(atomic_files.os, "fsync", recording)
    return calls


def test_a_replaced_file_is_flushed_before_its_rename_and_the_rename_after(tmp_path, synced):
    write_json_atomic(tmp_path / "run.json", {"score": 1})
    assert synced == ["file", "directory"]
    assert create_once(tmp_path / "once.json", "{}") and synced[2:] == ["file", "directory"]
    assert not create_once(tmp_path / "once.json", "{}")


def test_a_record_that_cannot_be_written_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    def disk_full(self, text):
        Path.touch(self)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space"):
        create_once(tmp_path / "run.json", "{}")
    assert list(tmp_path.iterdir()) == []
