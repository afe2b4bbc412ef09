"""Candidate hybrid mixes: the paper's knapsack over features, and their count vectors.

Shared by the training loop (mixes at random budgets to train proxy RMs on) and the router
(mixes at the requested budget to pick the best of).
"""

from __future__ import annotations

import numpy as np


def active_columns(bits: np.ndarray) -> np.ndarray:
    """(n, A) column indices of each row's features, padded with n_columns (one past the end)."""
    active = [np.flatnonzero(row) for row in np.asarray(bits)]
    width = max(1, max((len(a) for a in active), default=0))
    padded = np.full((len(active), width), bits.shape[1], dtype=np.int32)
    for row, columns in enumerate(active):
        padded[row, : len(columns)] = columns
    return padded


def knapsack_orders(bits: np.ndarray, n_candidates: int, rng: np.random.Generator,
                    active: np.ndarray | None = None) -> np.ndarray:
    """(n_candidates, n) row orders equal in distribution to the paper's knapsack walk.

    The walk takes features in random order and each feature's not-yet-taken carriers in random
    order, until the budget is met. A row is thus reached at the position of its earliest
    feature in the walk, in random order among the rows reached there, and rows with no feature
    come last (the paper's code stopped short of the budget instead). So an order is
    argsort(earliest feature position + uniform noise), and its first b rows are a knapsack
    mix of budget b: many candidates and every budget from one vectorised computation.
    """
    active = active_columns(bits) if active is None else active
    n_columns = bits.shape[1]
    positions = rng.permuted(np.tile(np.arange(n_columns, dtype=np.float32), (n_candidates, 1)),
                             axis=1)
    positions = np.hstack([positions, np.full((n_candidates, 1), n_columns, np.float32)])
    earliest = np.take_along_axis(positions[:, None, :], active[None], axis=2).min(axis=2)
    return np.argsort(earliest + rng.random(earliest.shape, dtype=np.float32), axis=1)


def first_in_order(orders: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """(N, n) boolean mixes: the first budgets[k] rows of orders[k]."""
    ranks = np.empty_like(orders)
    np.put_along_axis(ranks, orders, np.arange(orders.shape[1])[None, :], axis=1)
    return ranks < np.asarray(budgets)[:, None]


def count_vectors(human_masks: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """For every mix and feature, how many human-routed instances carry the feature.

    One matrix product for all candidates: (n_candidates, n) @ (n, n_features).
    """
    masks = np.atleast_2d(human_masks).astype(np.float32)
    return masks @ np.asarray(bits, dtype=np.float32)
