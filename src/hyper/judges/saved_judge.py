"""The CPU AI judge as a saved artifact: a Bradley-Terry head on frozen sentence embeddings.

Applying a saved judge is a small NumPy computation, so the tagger's Annotate labels pairs
without JAX; training one (`hyper.judges.training`) uses the proxy heads. A saved judge is its
parameters as NumPy arrays (.npz, no pickles) plus its config as JSON beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyper.core.atomic_files import atomic_open, write_json_atomic
from hyper.method.run_spec import ProxySpec

SEPARATOR = "/"


def labels_from_margins(margins: np.ndarray) -> tuple[list[str], np.ndarray]:
    """r(A) - r(B) -> the preferred side and the Bradley-Terry probability of that preference."""
    return ["A" if m >= 0 else "B" for m in margins], 1.0 / (1.0 + np.exp(-np.abs(margins)))


def _gelu(x: np.ndarray) -> np.ndarray:
    """The tanh approximation, as flax.linen.gelu computes it by default."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


@dataclass
class SavedJudge:
    params: dict[str, np.ndarray]  # flat: "params/Dense_0/kernel", ...
    config: ProxySpec
    embedding_model: str
    agreement_with_human: float

    def _reward(self, phi: np.ndarray) -> np.ndarray:
        x = np.asarray(phi, dtype=np.float32)
        layers = ["Dense_0", "Dense_1"] if self.config.hidden else ["Dense_0"]
        for k, layer in enumerate(layers):
            x = x @ self.params[f"params/{layer}/kernel"] + self.params[f"params/{layer}/bias"]
            if k < len(layers) - 1:
                x = _gelu(x)
        return x[..., 0]

    def margins(self, phi_a: np.ndarray, phi_b: np.ndarray) -> np.ndarray:
        """r(A) - r(B) for every pair."""
        return self._reward(phi_a) - self._reward(phi_b)


def save_judge(judge: SavedJudge, path: Path) -> None:
    meta = {"config": judge.config.model_dump(), "embedding_model": judge.embedding_model,
            "agreement_with_human": judge.agreement_with_human}
    write_json_atomic(Path(path).with_suffix(".json"), meta)
    arrays: dict[str, Any] = judge.params  # names are the parameters' paths
    with atomic_open(path, "wb") as out:
        np.savez(out, **arrays)


def load_judge(path: Path) -> SavedJudge:
    meta = json.loads(Path(path).with_suffix(".json").read_text())
    with np.load(path, allow_pickle=False) as data:
        params = {key: data[key] for key in data.files}
    return SavedJudge(params, ProxySpec(**meta["config"]), meta["embedding_model"],
                      meta["agreement_with_human"])
