"""A content-addressed store of fixed-width float vectors on local disk.

Each flush writes a new segment file (keys + matrix, NumPy .npz, no pickles) under a unique
name and renames it into place, so several processes can add to the same store without
locks and a crash never leaves a half-written segment behind. Writers that flush often (the
tagger commits every chunk) leave many small segments; opening a store with more than
`compact_after` of them merges them into one, so the next open reads one file.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from hyper.core.atomic_files import atomic_open

KEY_DTYPE = "<U64"
COMPACT_AFTER_SEGMENTS = 32


class VectorStore:
    def __init__(self, directory: Path, dim: int, compact_after: int = COMPACT_AFTER_SEGMENTS):
        self.directory = Path(directory)
        self.dim = dim
        self._vectors: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        self._segments: list[Path] = []  # segments on disk whose every vector is held here
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
            self._vectors.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
        self._segments.append(segment)

    def get_many(self, keys: list[str]) -> tuple[np.ndarray, list[int]]:
        """Vectors for `keys` (zeros where unknown) and the positions of the unknown keys."""
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        missing = []
        for i, key in enumerate(keys):
            vector = self._vectors.get(key)
            if vector is None:
                missing.append(i)
            else:
                out[i] = vector
        return out, missing

    def put_many(self, keys: list[str], vectors: np.ndarray) -> None:
        for key, vector in zip(keys, np.asarray(vectors, dtype=np.float32), strict=True):
            self._vectors[key] = vector
            self._pending[key] = vector

    def _write_segment(self, vectors: dict[str, np.ndarray]) -> Path:
        path = self.directory / f"seg-{uuid.uuid4().hex}.npz"
        with atomic_open(path, "wb") as out:
            np.savez(out, keys=np.array(list(vectors), dtype=KEY_DTYPE), vectors=np.stack(list(vectors.values())))
        return path

    def flush(self) -> None:
        if not self._pending:
            return
        self._segments.append(self._write_segment(self._pending))
        self._pending.clear()

    def compact(self) -> None:
        """Everything held here as one segment, replacing the segments it came from. The new
        segment is in place before any old one is removed: a crash in between leaves duplicate
        rows (merged next time), never a loss. Segments that other processes wrote since this
        store was opened are not held here, so they are left alone."""
        if not self._vectors:
            return
        merged = self._write_segment(self._vectors)
        for segment in self._segments:
            segment.unlink(missing_ok=True)
        self._segments = [merged]
        self._pending.clear()

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def __len__(self) -> int:
        return len(self._vectors)
