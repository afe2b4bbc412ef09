"""Training the CPU AI judge on human labels, and cross-fitted AI labels for a labelled pool.

Cross-fitting: no instance is judged by a model that saw its own human label (train on the
other folds, label this one). This is the stand-in for an LM judge when a dataset has no AI
labels of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from flax import traverse_util

from hyper.judges.saved_judge import SEPARATOR, SavedJudge, labels_from_margins
from hyper.method.proxy_rm import predict_margins, train_heads
from hyper.method.reward_pairs import targets_and_weights
from hyper.method.run_spec import ProxySpec


@dataclass
class JudgeLabels:
    labels: list[str]  # "A" or "B"
    confidence: np.ndarray  # sigmoid(|margin|), in [0.5, 1]
    agreement_with_human: float


def cross_fitted_labels(phi_a: np.ndarray, phi_b: np.ndarray, human_labels: list[str],
                        config: ProxySpec, n_folds: int = 2) -> JudgeLabels:
    n = len(human_labels)
    folds = np.random.default_rng(config.seed).permutation(n) % n_folds
    targets, weights = targets_and_weights(human_labels)
    # One head per fold, trained on the other folds only, in one vmapped call.
    fold_weights = np.stack([weights * (folds != k) for k in range(n_folds)])
    params, _ = train_heads(phi_a, phi_b, np.tile(targets, (n_folds, 1)), fold_weights, config)
    margins = predict_margins(params, phi_a, phi_b, config)[folds, np.arange(n)]
    decided = targets != 0
    agreement = (float(np.mean(np.sign(margins[decided]) == targets[decided])) if decided.any()
                 else float("nan"))
    labels, confidence = labels_from_margins(margins)
    return JudgeLabels(labels, confidence, agreement)


def train_judge(phi_a: np.ndarray, phi_b: np.ndarray, human_labels: list[str], config: ProxySpec,
                embedding_model: str) -> SavedJudge:
    """One head on every human label, and its cross-fitted agreement as an honest quality."""
    targets, weights = targets_and_weights(human_labels)
    params, _ = train_heads(phi_a, phi_b, targets[None], weights[None], config)
    single = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[0], params)
    flat = traverse_util.flatten_dict(single, sep=SEPARATOR)
    agreement = cross_fitted_labels(phi_a, phi_b, human_labels, config).agreement_with_human
    return SavedJudge(flat, config, embedding_model, agreement)
