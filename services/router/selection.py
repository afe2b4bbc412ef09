"""Routing strategies: which instances go to humans under a budget. Pure NumPy, no gRPC.

Each strategy gets what it needs as plain arrays and returns a boolean human mask; scoring a
mask with the PPM is the caller's business, so the same code serves Route and the benchmarks.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from hyper.candidates import count_vectors, sample_mixes
from hyper.errors import InvalidArgument

STRATEGIES = ("topk", "simulated")
DEFAULT_CANDIDATES = 500


def topk(gains: np.ndarray, budget: int) -> np.ndarray:
    """The `budget` instances with the largest gains (ties broken by position, stable)."""
    order = np.argsort(-np.asarray(gains), kind="stable")
    mask = np.zeros(len(gains), dtype=bool)
    mask[order[:budget]] = True
    return mask


def simulated(bits: np.ndarray, budget: int, n_candidates: int,
              predict: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator
              ) -> tuple[np.ndarray, float]:
    """Best of `n_candidates` knapsack mixes at the budget, by predicted score."""
    if n_candidates < 1:
        raise InvalidArgument("n_candidates", "must be at least 1")
    masks = sample_mixes(bits, np.full(n_candidates, budget), rng)
    scores = predict(count_vectors(masks, bits))
    best = int(np.argmax(scores))
    return masks[best], float(scores[best])
