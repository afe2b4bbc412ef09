"""Candidate hybrid mixes: the paper's knapsack over features, and their count vectors."""

from __future__ import annotations

import numpy as np

from hyper.errors import InvalidArgument


def resolve_budget(n_instances: int, fraction: float | None = None, count: int | None = None) -> int:
    """Number of human annotations for a budget given as a fraction in [0, 1] or a count."""
    if (fraction is None) == (count is None):
        raise InvalidArgument("budget", "give exactly one of a fraction or a count")
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0 or np.isnan(fraction):
            raise InvalidArgument("budget.fraction", f"{fraction} is not in [0, 1]")
        return int(round(fraction * n_instances))
    if count < 0 or count > n_instances:
        raise InvalidArgument("budget.count", f"{count} is not in [0, {n_instances}]")
    return int(count)


def feature_carriers(bits: np.ndarray) -> list[np.ndarray]:
    """For every feature column, the indices of the instances that carry it."""
    return [np.flatnonzero(column) for column in np.asarray(bits, dtype=bool).T]


def knapsack_mix(carriers: list[np.ndarray], n_instances: int, budget: int,
                 rng: np.random.Generator) -> np.ndarray:
    """One candidate human set (boolean mask) of exactly `budget` instances.

    Walks the features in random order, taking the carriers of each in random order and
    skipping those already taken, until the budget is met. Instances that carry no feature at
    all are indistinguishable to the PPM, so if the features run out first they fill the rest
    at random (the paper's code stopped short of the budget instead).
    """
    mask = np.zeros(n_instances, dtype=bool)
    taken = 0
    for feature in rng.permutation(len(carriers)):
        if taken == budget:
            break
        shuffled = rng.permutation(carriers[feature])
        fresh = shuffled[~mask[shuffled]][: budget - taken]
        mask[fresh] = True
        taken += len(fresh)
    if taken < budget:
        rest = rng.permutation(np.flatnonzero(~mask))[: budget - taken]
        mask[rest] = True
    return mask


def sample_mixes(bits: np.ndarray, budgets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A (n_candidates, n_instances) boolean matrix of knapsack mixes, one per budget."""
    carriers = feature_carriers(bits)
    n_instances = bits.shape[0]
    return np.stack([knapsack_mix(carriers, n_instances, int(b), rng) for b in budgets])


def count_vectors(human_masks: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """For every mix and feature, how many human-routed instances carry the feature.

    One matrix product for all candidates: (n_candidates, n) @ (n, n_features).
    """
    masks = np.atleast_2d(human_masks).astype(np.float32)
    return masks @ np.asarray(bits, dtype=np.float32)
