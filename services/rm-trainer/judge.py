"""The CPU AI judge: a proxy reward model trained on human labels.

Two uses: cross-fitted labels for a human-labelled pool (no instance is judged by a model that
saw its own human label: train on one half, label the other, and swap), and a saved judge
that labels new, unlabelled pairs (the tagger's Annotate). A saved judge is NumPy arrays
(.npz, no pickles) plus its config as JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from hyper.rm_trainer.proxy import ProxyConfig, predict_margins, targets_and_weights, train_heads


@dataclass
class JudgeLabels:
    labels: list[str]  # "A" or "B"
    confidence: np.ndarray  # sigmoid(|margin|), in [0.5, 1]
    agreement_with_human: float


def cross_fitted_labels(phi_a: np.ndarray, phi_b: np.ndarray, human_labels: list[str],
                        config: ProxyConfig, n_folds: int = 2) -> JudgeLabels:
    n = len(human_labels)
    folds = np.random.default_rng(config.seed).permutation(n) % n_folds
    targets, weights = targets_and_weights(human_labels)
    # One head per fold, trained on the other folds only, in one vmapped call.
    fold_weights = np.stack([weights * (folds != k) for k in range(n_folds)])
    params, _ = train_heads(phi_a, phi_b, np.tile(targets, (n_folds, 1)), fold_weights, config)
    margins = predict_margins(params, phi_a, phi_b, config)[folds, np.arange(n)]
    decided = targets != 0
    agreement = float(np.mean(np.sign(margins[decided]) == targets[decided])) if decided.any() else float("nan")
    labels, confidence = labels_from_margins(margins)
    return JudgeLabels(labels, confidence, agreement)


def labels_from_margins(margins: np.ndarray) -> tuple[list[str], np.ndarray]:
    """r(A) - r(B) -> the preferred side and the Bradley-Terry probability of that preference."""
    return ["A" if m >= 0 else "B" for m in margins], 1.0 / (1.0 + np.exp(-np.abs(margins)))


@dataclass
class SavedJudge:
    params: dict
    config: ProxyConfig
    embedding_model: str
    agreement_with_human: float

    def margins(self, phi_a: np.ndarray, phi_b: np.ndarray) -> np.ndarray:
        stacked = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[None], self.params)
        return predict_margins(stacked, phi_a, phi_b, self.config)[0]


def train_judge(phi_a: np.ndarray, phi_b: np.ndarray, human_labels: list[str], config: ProxyConfig,
                embedding_model: str) -> SavedJudge:
    """One head on every human label, and its cross-fitted agreement as an honest quality."""
    targets, weights = targets_and_weights(human_labels)
    params, _ = train_heads(phi_a, phi_b, targets[None], weights[None], config)
    single = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[0], params)
    agreement = cross_fitted_labels(phi_a, phi_b, human_labels, config).agreement_with_human
    return SavedJudge(single, config, embedding_model, agreement)


def save_judge(judge: SavedJudge, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = traverse_util.flatten_dict(judge.params, sep="/")
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **{key: np.asarray(value) for key, value in flat.items()})
    meta = {"config": asdict(judge.config), "embedding_model": judge.embedding_model,
            "agreement_with_human": judge.agreement_with_human}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)


def load_judge(path: Path) -> SavedJudge:
    meta = json.loads(Path(path).with_suffix(".json").read_text())
    with np.load(path, allow_pickle=False) as data:
        params = traverse_util.unflatten_dict({k: data[k] for k in data.files}, sep="/")
    return SavedJudge(params, ProxyConfig(**meta["config"]), meta["embedding_model"],
                      meta["agreement_with_human"])
