"""Judges in cascade: each pair is labelled by the cheapest judge first and climbs to a stronger
judge, and finally to a human, while its current label's calibrated probability of being wrong
exceeds that level's threshold; every label asked for is paid for.

Each judge's error probability comes from an error model of that judge alone (its features and
its own confidence, e.g. whether its two response orders agree), fitted on labelled history like
the router's. The thresholds are chosen on the history (cross-fitted probabilities: no pair is
scored by a model that saw it) as those of best label accuracy whose cost stays within the money
budget; on new pairs, humans take the highest remaining error probabilities the money still
buys. The baseline it must beat at the same money is one judge on every pair plus humans on
that judge's most likely errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

GRID = np.linspace(0.0, 1.0, 21)  # candidate thresholds on an error probability


@dataclass(frozen=True)
class Level:
    """A labeller of the cascade and what one of its labels costs."""

    name: str
    cost: float


@dataclass(frozen=True)
class Labelled:
    """Per pair and level (judges in cascade order, then the human): the probability that the
    level's label is wrong, and (where known) whether it is right."""

    wrong: np.ndarray  # (n, J) the judges' error probabilities
    correct: np.ndarray  # (n, J + 1) bool: each judge's label, then the human's, is right


def climb(wrong: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The level each pair stops at (0..J, J = the human): it climbs while its current judge's
    error probability exceeds that level's threshold."""
    stop = np.zeros(len(wrong), dtype=np.int64)
    climbing = np.ones(len(wrong), dtype=bool)
    for level, threshold in enumerate(thresholds):
        climbing &= wrong[:, level] > threshold
        stop += climbing
    return stop


def cost_of(stop: np.ndarray, levels: list[Level], human_cost: float) -> float:
    """Every label asked for: each judge up to the stop, and the human's at the top."""
    costs = np.cumsum([level.cost for level in levels] + [human_cost])
    return float(costs[stop].sum())


def accuracy(stop: np.ndarray, correct: np.ndarray) -> float:
    return float(correct[np.arange(len(stop)), stop].mean())


def choose_thresholds(history: Labelled, levels: list[Level], human_cost: float, money: float) -> np.ndarray:
    """The thresholds of best label accuracy on the history whose cost stays within `money` per
    pair (ties: the cheaper)."""
    best, chosen = (-1.0, 0.0), np.ones(len(levels))
    for thresholds in product(GRID, repeat=len(levels)):
        stop = climb(history.wrong, np.array(thresholds))
        spent = cost_of(stop, levels, human_cost) / len(stop)
        if spent <= money + 1e-12 and (accuracy(stop, history.correct), -spent) > best:
            best, chosen = (accuracy(stop, history.correct), -spent), np.array(thresholds)
    return chosen


def route(labelled: Labelled, thresholds: np.ndarray, levels: list[Level], human_cost: float, money: float
          ) -> np.ndarray:
    """The level each new pair stops at: the thresholds' climb, with the humans it calls for
    kept, the most likely errors first, while the money per pair lasts (the rest keep the last
    judge's label)."""
    stop = climb(labelled.wrong, thresholds)
    top = len(levels)
    humans = np.flatnonzero(stop == top)
    stop[humans] = top - 1
    spare = money * len(stop) - cost_of(stop, levels, human_cost)
    affordable = int(max(spare, 0.0) // human_cost)
    stop[humans[np.argsort(-labelled.wrong[humans, top - 1], kind="stable")][:affordable]] = top
    return stop


def single_judge(labelled: Labelled, judge: int, level: Level, human_cost: float, money: float) -> np.ndarray:
    """One judge on every pair, humans on its most likely errors while the money lasts: per
    pair, 0 (the judge's label) or 1 (the human's)."""
    n = len(labelled.wrong)
    humans = int(max(0.0, money * n - level.cost * n) // human_cost)
    order = np.argsort(-labelled.wrong[:, judge], kind="stable")
    stop = np.zeros(n, dtype=np.int64)
    stop[order[: min(humans, n)]] = 1
    return stop
