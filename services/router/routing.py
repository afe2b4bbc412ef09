"""The Route use case: features from the tagger, gains/predictions from the ppm, a selection."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from hyper.candidates import count_vectors, resolve_budget
from hyper.errors import InvalidArgument
from hyper.router import selection
from hyper.clients import PPMClient, TaggerClient
from hyper.schema import Dataset

log = logging.getLogger(__name__)


@dataclass
class RoutePlan:
    ids: list[str]
    human: np.ndarray  # boolean mask
    gains: np.ndarray
    predicted_score: float
    ppm_version: str
    count_vector: np.ndarray
    feature_names: list[str]
    budget: int


@dataclass
class RouteOptions:
    strategy: str
    seed: int = 0
    n_candidates: int = selection.DEFAULT_CANDIDATES
    ppm_model: str = ""
    ppm_version: str = ""


def route(dataset: Dataset, budget_fraction: float | None, budget_count: int | None,
          options: RouteOptions, tagger: TaggerClient, ppm: PPMClient) -> RoutePlan:
    if options.strategy not in selection.STRATEGIES:
        raise InvalidArgument("strategy", f"{options.strategy!r} is not one of {selection.STRATEGIES}")
    if not dataset.instances:
        raise InvalidArgument("dataset", "has no instances")
    budget = resolve_budget(len(dataset), budget_fraction, budget_count)
    matrix = tagger.tag(dataset.instances)
    # Pin the version once so gains and predictions come from the same model.
    gains, version = ppm.gains(matrix, options.ppm_model, options.ppm_version)
    names = matrix.feature_names

    def predict(counts: np.ndarray) -> np.ndarray:
        return ppm.predict(names, counts, options.ppm_model, version)

    if options.strategy == "topk":
        human = selection.topk(gains, budget)
    else:
        rng = np.random.default_rng(options.seed)
        human, _ = selection.simulated(matrix.bits, budget, options.n_candidates, predict, rng)
    counts = count_vectors(human, matrix.bits)
    score = float(predict(counts)[0])
    log.info("routed", extra={"strategy": options.strategy, "n_instances": len(dataset),
                              "n_human": int(human.sum()), "predicted_score": score})
    return RoutePlan(matrix.instance_ids, human, gains, score, version, counts[0], names, budget)
