"""The shards of one tagging run, claimed by workers through marker files on a shared volume.

Where nothing hands a worker its shard (a Kubernetes API server older than Indexed Jobs drops
`completionMode`; the local backend starts plain processes), workers pull shards from a run
directory that all of them mount:

- a worker owns shard 7 by creating `shard-00007.claim-0` with O_EXCL, atomic on a local disk
  and on NFSv3 or later, so of two workers racing for it exactly one wins;
- while it works it touches its claim every quarter lease, and when the shard's values are
  committed to the feature cache it writes `shard-00007.done` (a JSON record);
- a claim untouched for a lease (its pod was killed mid-shard) is taken over by creating the
  next generation, `shard-00007.claim-1`, again with O_EXCL: one winner per takeover.

An owner that was only slow, not dead, may finish after a takeover: both commit the same rows
under the same content keys, so the second commit changes nothing. Ages are measured against a
file touched on the same volume, not against this host's clock.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from hyper.core.atomic_files import write_json_atomic

CLAIM = re.compile(r"shard-(\d+)\.claim-(\d+)$")


def shard_rows(n_rows: int, n_shards: int, index: int) -> range:
    """Rows of shard `index`: every n_shards-th row from it (strided, so that a file sorted by
    length or source still gives every shard a like share of the work)."""
    return range(index, n_rows, n_shards)


@dataclass
class Claim:
    """A held shard; a context manager that keeps the claim alive while the block runs and
    releases it at once (for another worker to take) if the block fails."""

    index: int
    path: Path
    lease_seconds: float

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._touch, name=f"claim-{self.index}", daemon=True)

    def _touch(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            self.path.touch()

    def __enter__(self) -> Claim:
        self._heartbeat.start()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._stop.set()
        self._heartbeat.join()
        if error is not None:
            self.path.unlink(missing_ok=True)


class ShardQueue:
    def __init__(self, run_dir: Path, n_shards: int, lease_seconds: float = 60.0):
        self.run_dir = Path(run_dir)
        self.n_shards = n_shards
        self.lease_seconds = lease_seconds
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _done_path(self, index: int) -> Path:
        return self.run_dir / f"shard-{index:05d}.done"

    def is_done(self, index: int) -> bool:
        return self._done_path(index).is_file()

    def all_done(self) -> bool:
        return all(self.is_done(index) for index in range(self.n_shards))

    def mark_done(self, index: int, record: dict) -> None:
        write_json_atomic(self._done_path(index), record)

    def records(self) -> list[dict]:
        """The done shards' records, by shard."""
        return [json.loads(self._done_path(index).read_text()) for index in range(self.n_shards)
                if self.is_done(index)]

    def _volume_now(self) -> float:
        clock = self.run_dir / ".clock"
        clock.touch()
        return clock.stat().st_mtime

    def _latest_claims(self) -> dict[int, tuple[int, Path]]:
        """Shard -> (generation, path) of its newest claim."""
        latest: dict[int, tuple[int, Path]] = {}
        for path in self.run_dir.glob("shard-*.claim-*"):
            match = CLAIM.match(path.name)
            if match:
                index, generation = int(match[1]), int(match[2])
                if generation >= latest.get(index, (-1, path))[0]:
                    latest[index] = (generation, path)
        return latest

    def _age(self, path: Path, now: float) -> float:
        try:
            return now - path.stat().st_mtime
        except FileNotFoundError:  # released by a failed owner just now: free to take
            return float("inf")

    def claim(self) -> Claim | None:
        """An unclaimed shard, or one whose claim went stale; None when every shard is done or
        held by a live claim."""
        latest = self._latest_claims()
        now = self._volume_now()
        for index in range(self.n_shards):
            if self.is_done(index):
                continue
            generation, path = latest.get(index, (-1, None))
            if path is not None and self._age(path, now) < self.lease_seconds:
                continue
            claim_path = self.run_dir / f"shard-{index:05d}.claim-{generation + 1}"
            try:
                os.close(os.open(claim_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                continue  # another worker took it first
            return Claim(index, claim_path, self.lease_seconds)
        return None
