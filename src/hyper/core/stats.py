"""Intervals the project reports: proportions (Wilson), paired differences (a bootstrap over
pairs and seeds), and cross-validated AUCs.

Every interval is 95% unless the caller says otherwise; every bootstrap takes a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci_low: float
    ci_high: float

    def to_json(self) -> dict:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high}


def wilson(successes: int, trials: int) -> Estimate:
    """A proportion with its Wilson score interval (sound for small counts and extremes)."""
    if trials == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    p = successes / trials
    centre = (p + Z95**2 / (2 * trials)) / (1 + Z95**2 / trials)
    half = Z95 * np.sqrt(p * (1 - p) / trials + Z95**2 / (4 * trials**2)) / (1 + Z95**2 / trials)
    return Estimate(p, float(centre - half), float(centre + half))


def paired_difference(outcome: np.ndarray, baseline: np.ndarray, seed: int = 0,
                      resamples: int = RESAMPLES) -> Estimate:
    """Mean of outcome - baseline over (seeds, pairs) arrays measured on the same pairs with
    the same seeds, with a percentile interval from a bootstrap over both pairs and seeds.

    Resampling is done with multinomial weights, so a resample costs one (seeds, pairs)
    weighted sum, not a copy of the data.
    """
    diff = np.atleast_2d(np.asarray(outcome, dtype=np.float64) - np.asarray(baseline, dtype=np.float64))
    n_seeds, n_pairs = diff.shape
    rng = np.random.default_rng(seed)
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), resamples)
    pair_weights = rng.multinomial(n_pairs, np.full(n_pairs, 1 / n_pairs), resamples)
    resampled = np.einsum("bs,sp,bp->b", seed_weights, diff, pair_weights) / (n_seeds * n_pairs)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return Estimate(float(diff.mean()), float(low), float(high))


def mean_interval(values: np.ndarray, seed: int = 0, resamples: int = RESAMPLES) -> Estimate:
    """Mean over (seeds, pairs) with the same bootstrap: a paired difference against zero."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    return paired_difference(values, np.zeros_like(values), seed, resamples)


def auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a positive outscores a negative (ties
    count half), by ranks."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ordered = np.sort(scores)
    ranks = (np.searchsorted(ordered, scores, "left") + np.searchsorted(ordered, scores, "right") + 1) / 2
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_interval(scores: np.ndarray, positives: np.ndarray, seed: int = 0,
                 resamples: int = 500) -> Estimate:
    """AUC with a percentile interval from a bootstrap over the pairs."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(scores), (resamples, len(scores)))
    spread = np.array([auc(scores[r], positives[r]) for r in rows])
    low, high = np.nanpercentile(spread, [2.5, 97.5])
    return Estimate(auc(scores, positives), float(low), float(high))
