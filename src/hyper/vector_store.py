"""A content-addressed store of fixed-width float vectors on local disk.

Each flush writes a new segment file (keys + matrix, NumPy .npz, no pickles) under a unique
name and renames it into place, so several processes can add to the same store without
locks and a crash never leaves a half-written segment behind.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from hyper.atomic import atomic_open

KEY_DTYPE = "<U64"


class VectorStore:
    def __init__(self, directory: Path, dim: int):
        self.directory = Path(directory)
        self.dim = dim
        self._vectors: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        self._load()

    def _load(self) -> None:
        if not self.directory.is_dir():
            return
        for segment in sorted(self.directory.glob("seg-*.npz")):
            with np.load(segment, allow_pickle=False) as data:
                if data["vectors"].shape[1] != self.dim:
                    continue  # written by another version; ignored, rebuilt on demand
                self._vectors.update(zip(data["keys"].tolist(), data["vectors"], strict=True))

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

    def flush(self) -> None:
        if not self._pending:
            return
        with atomic_open(self.directory / f"seg-{uuid.uuid4().hex}.npz", "wb") as out:
            np.savez(out, keys=np.array(list(self._pending), dtype=KEY_DTYPE),
                     vectors=np.stack(list(self._pending.values())))
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._vectors)
