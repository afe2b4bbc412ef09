"""A content-addressed store of fixed-width float vectors on local disk.

Each flush writes a new segment file (keys + matrix, NumPy .npz, no pickles) under a unique
name and renames it into place, so several processes can add to the same store without
locks and a crash never leaves a half-written segment behind. Writers that flush often (the
tagger commits every chunk) leave many small segments; opening a store with more than
`compact_after` of them merges them into one, so the next open reads one file.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from pathlib import Path

import numpy as np

from hyper.core.atomic_files import atomic_open

KEY_DTYPE = "<U64"
COMPACT_AFTER_SEGMENTS = 32


class VectorStore:
    """Vectors held in one matrix with a row per key: a lookup of a million keys is one dict
    probe per key and one gather, not a row copy per key. Thread-safe: a key's row is read only
    once its vector is written (the tagger's requests run on a pool of threads)."""

    def __init__(self, directory: Path, dim: int, compact_after: int = COMPACT_AFTER_SEGMENTS):
        self.directory = Path(directory)
        self.dim = dim
        self._rows: dict[str, int] = {}
        self._matrix = np.zeros((0, dim), dtype=np.float32)  # rows past len(self._rows) are spare
        self._pending: dict[str, None] = {}  # keys put since the last flush, in order
        self._segments: list[Path] = []  # segments on disk whose every vector is held here
        self._lock = threading.Lock()
        self._load()
        if len(self._segments) > compact_after:
            self.compact()

    def _load(self) -> None:
        """Every segment of this width; listed again when one vanished while being read (another
        process merged it into a segment this listing may not have seen)."""
        seen: set[Path] = set()
        vanished = True
        while vanished and self.directory.is_dir():
            vanished = False
            for segment in sorted(set(self.directory.glob("seg-*.npz")) - seen):
                seen.add(segment)
                try:
                    self._load_segment(segment)
                except FileNotFoundError:
                    vanished = True

    def _load_segment(self, segment: Path) -> None:
        with np.load(segment, allow_pickle=False) as data:
            if data["vectors"].shape[1] != self.dim:
                return  # written by another version; ignored, rebuilt on demand
            self._hold(data["keys"].tolist(), data["vectors"])
        self._segments.append(segment)

    def _hold(self, keys: list[str], vectors: np.ndarray) -> None:
        """Each key's row set to its vector (a new row for a new key; a later vector wins)."""
        with self._lock:
            rows = self._rows
            positions = [rows.setdefault(key, len(rows)) for key in keys]
            if len(rows) > len(self._matrix):
                grown = np.zeros((max(len(rows), 2 * len(self._matrix)), self.dim), dtype=np.float32)
                grown[: len(self._matrix)] = self._matrix
                self._matrix = grown
            self._matrix[positions] = vectors

    def get_many(self, keys: list[str]) -> tuple[np.ndarray, list[int]]:
        """Vectors for `keys` (zeros where unknown) and the positions of the unknown keys."""
        with self._lock:
            rows = np.fromiter(map(self._rows.get, keys, itertools.repeat(-1)), dtype=np.int64, count=len(keys))
            out = self._matrix[np.maximum(rows, 0)] if len(self._rows) else np.zeros((len(keys), self.dim),
                                                                                    np.float32)
        missing = np.flatnonzero(rows < 0)
        out[missing] = 0.0
        return out, missing.tolist()

    def put_many(self, keys: list[str], vectors: np.ndarray) -> None:
        self._hold(list(keys), np.asarray(vectors, dtype=np.float32))
        with self._lock:
            self._pending.update(dict.fromkeys(keys))

    def _write_segment(self, keys: list[str]) -> Path:
        path = self.directory / f"seg-{uuid.uuid4().hex}.npz"
        with self._lock:
            vectors = self._matrix[[self._rows[key] for key in keys]]
        with atomic_open(path, "wb") as out:
            np.savez(out, keys=np.array(keys, dtype=KEY_DTYPE), vectors=vectors)
        return path

    def flush(self) -> None:
        with self._lock:
            keys = list(self._pending)
        if keys:
            self._segments.append(self._write_segment(keys))
            self._written(keys)

    def _written(self, keys: list[str]) -> None:
        """No longer pending once on disk (a failed write leaves them pending)."""
        with self._lock:
            for key in keys:
                self._pending.pop(key, None)

    def compact(self) -> None:
        """Everything held here as one segment, replacing the segments it came from. The new
        segment is in place before any old one is removed: a crash in between leaves duplicate
        rows (merged next time), never a loss. Segments that other processes wrote since this
        store was opened are not held here, so they are left alone."""
        with self._lock:
            keys = list(self._rows)
        if not keys:
            return
        merged = self._write_segment(keys)
        self._written(keys)
        for segment in self._segments:
            segment.unlink(missing_ok=True)
        self._segments = [merged]

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def __len__(self) -> int:
        return len(self._rows)
