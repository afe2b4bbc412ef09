"""The CPU AI judge: a proxy reward model, cross-fitted so no instance is judged by a model
that saw its own human label (train on one half, label the other, and swap)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    labels = ["A" if m >= 0 else "B" for m in margins]
    decided = targets != 0
    agreement = float(np.mean(np.sign(margins[decided]) == targets[decided])) if decided.any() else float("nan")
    return JudgeLabels(labels, 1.0 / (1.0 + np.exp(-np.abs(margins))), agreement)
