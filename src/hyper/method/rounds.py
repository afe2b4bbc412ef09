"""Routing in rounds: labels arrive in batches, so the PPM can learn from each batch's human
labels before the next batch is routed, under one total budget (the paper names online
updating as future work).

Round r: fit a PPM on the labelled pairs so far, route batch r with its share of the budget,
collect the human labels of the pairs it sent to humans, and add those pairs (human and judge
label both known now) to what the next fit learns from. What a team knows of a new pair is
its human label: that label is the reference the refit scores mixes against. The steps are
callables, so the same loop runs over the services (`hyper rounds`) and in process (the
benchmark).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

Pair = TypeVar("Pair")
Model = TypeVar("Model")


def budget_per_round(total: int, n_rounds: int) -> list[int]:
    """The total split evenly, the remainder to the first rounds."""
    if n_rounds < 1 or total < 0:
        raise ValueError("rounds >= 1 and a budget >= 0 are needed")
    return [total // n_rounds + (1 if r < total % n_rounds else 0) for r in range(n_rounds)]


def split_batches(n: int, n_rounds: int, seed: int) -> list[np.ndarray]:
    """The new pairs' positions in `n_rounds` batches of (nearly) equal size, in random order."""
    return [np.sort(part) for part in np.array_split(np.random.default_rng(seed).permutation(n), n_rounds)]


@dataclass
class RoundRecord(Generic[Model]):
    round: int
    n_training: int  # labelled pairs the PPM was fitted on
    n_batch: int
    budget: int
    n_human: int
    model: Model


@dataclass
class RoundsResult(Generic[Model]):
    to_human: list[np.ndarray]  # per batch, which of its pairs went to humans
    rounds: list[RoundRecord[Model]]


def run_rounds(history: Sequence[Pair], batches: Sequence[Sequence[Pair]], total_budget: int,
               fit: Callable[[list[Pair]], Model], route: Callable[[Model, list[Pair], int], np.ndarray],
               collect: Callable[[list[Pair]], list[Pair]],
               progress: Callable[[RoundRecord[Model]], None] = lambda record: None) -> RoundsResult[Model]:
    """fit(labelled pairs) -> PPM; route(PPM, batch, budget) -> to-human mask; collect(the pairs
    sent to humans) -> those pairs with their human labels, as the next fit learns from them."""
    training = list(history)
    masks, records = [], []
    for r, (batch, budget) in enumerate(zip(batches, budget_per_round(total_budget, len(batches)), strict=True)):
        model = fit(training)
        mask = np.asarray(route(model, list(batch), budget), dtype=bool)
        record = RoundRecord(r + 1, len(training), len(batch), budget, int(mask.sum()), model)
        progress(record)
        training += collect([pair for pair, human in zip(batch, mask, strict=True) if human])
        masks.append(mask)
        records.append(record)
    return RoundsResult(masks, records)
