"""From a routing problem to a route: the strategy's choice under the budget (the pairs only
humans may label included), each instance's route, gain and cost, the predicted score of the
choice with its interval (an error model's label accuracy, or a PPM's score), and the budget
curve of the same prediction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hyper.api.messages import AI, CurvePoint, RouteOptions, Source
from hyper.method.error_models import ErrorModel, Inputs
from hyper.method.performance_models import PerformanceModel
from hyper_router import selection
from hyper_router.label_routing import EXPLORATION, Evidence, predict
from hyper_router.optimize import optimize
from hyper_router.problem import ForcedSplit
from hyper_router.selection import RoutingProblem

Solver = Callable[[RoutingProblem, RouteOptions, np.random.Generator], np.ndarray]

# One solver per strategy that chooses pairs itself (a test checks them against the registry
# of hyper.api.messages; "auto" takes one of them, "cold_start" is auto without a model).
SOLVERS: dict[str, Solver] = {
    "topk": lambda problem, options, rng: selection.topk(problem),
    "simulated": lambda problem, options, rng: selection.simulated(problem, options.n_candidates, rng),
    "optimal_pos": lambda problem, options, rng: selection.optimal_pos(problem),
    "optimal_grad": lambda problem, options, rng: selection.optimal_grad(problem, options.epsilon),
    "random": lambda problem, options, rng: selection.random_mix(problem, rng),
    "uncertainty": lambda problem, options, rng: selection.uncertainty(problem),
    "optimize": lambda problem, options, rng: optimize(problem, options.n_candidates, rng),
    "error_model": lambda problem, options, rng: selection.error_model(problem),
    "cold_start": lambda problem, options, rng: selection.cold_start(
        problem, EXPLORATION if options.exploration_fraction is None else options.exploration_fraction, rng),
}


def solve(problem: RoutingProblem, options: RouteOptions, strategy: str = "") -> np.ndarray:
    """The choice of `strategy` (default: the options'), reproducible under the options' seed."""
    return SOLVERS[strategy or options.strategy](problem, options, np.random.default_rng(options.seed))


def choose(split: ForcedSplit, strategy: str, options: RouteOptions, budget: float) -> np.ndarray:
    """The strategy's choice under `budget`, the forced pairs included, over the whole problem."""
    return split.whole(solve(split.at_budget(budget), options, strategy))


def to_human(problem: RoutingProblem, chosen: np.ndarray) -> np.ndarray:
    """Per instance: whether a chosen item sends it to a paid source."""
    routed = np.zeros(problem.n_instances, dtype=bool)
    routed[problem.instance[chosen]] = True
    return routed


def per_instance(problem: RoutingProblem, chosen: np.ndarray, gains: np.ndarray,
                 sources: list[Source]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each instance's route, the gain of its paid item (first source if AI), its cost."""
    n = problem.n_instances
    items = np.flatnonzero(chosen)
    item_of = np.arange(n)  # the first source's item by default
    item_of[problem.instance[items]] = items
    route_of = np.zeros(n, dtype=np.int64)  # 0: AI, k: the k-th paid source
    route_of[problem.instance[items]] = items // n + 1
    names = np.array([AI, *(source.name for source in sources)], dtype=object)
    return names[route_of].tolist(), gains[item_of], np.where(route_of > 0, problem.costs[item_of], 0.0)


def item_gains(problem: RoutingProblem) -> np.ndarray:
    """Per item, what the assignments report as its gain: the error model's expected gain in
    label accuracy, else the PPM's gain, else nothing (zeros)."""
    if problem.label_gains is not None:
        return problem.label_gains[problem.instance]
    if problem.model is not None:
        return selection.item_gains(problem)
    return np.zeros(len(problem.costs))


@dataclass(frozen=True)
class Prediction:
    target: str  # what is predicted: "label_accuracy" or "rm_accuracy"
    mean: float
    low: float
    high: float


class Predictor(Protocol):
    @property
    def target(self) -> str: ...

    def predict(self, chosen: np.ndarray, level: float) -> Prediction: ...


@dataclass
class LabelAccuracy:
    """The label accuracy of a choice, from the error model's calibrated probabilities."""

    errors: ErrorModel
    problem: RoutingProblem
    inputs: Inputs
    evidence: Evidence
    target: str = "label_accuracy"

    def predict(self, chosen: np.ndarray, level: float) -> Prediction:
        p = predict(self.errors, self.inputs, to_human(self.problem, chosen), level, self.evidence)
        return Prediction(self.target, p.mean, p.low, p.high)


@dataclass
class PPMScore:
    """A PPM's score of a choice's count vector, with its split-conformal interval."""

    model: PerformanceModel
    problem: RoutingProblem

    @property
    def target(self) -> str:
        return self.model.target

    def predict(self, chosen: np.ndarray, level: float) -> Prediction:
        counts = self.problem.counts(chosen)
        lower, upper = self.model.predict_interval(counts, level, self.problem.n_instances)
        return Prediction(self.target, float(self.model.predict(counts)[0]), float(lower[0]), float(upper[0]))


def budget_curve(split: ForcedSplit, strategy: str, options: RouteOptions, total: float,
                 predictor: Predictor) -> list[CurvePoint]:
    """The predicted score of the strategy's choice at budgets from 0 to 100% of `total`."""
    problem = split.problem
    points = []
    for fraction in np.linspace(0.0, 1.0, options.curve_points):
        budget = round(fraction * total) if problem.exact_count else fraction * total
        chosen = choose(split, strategy, options, float(budget))
        predicted = predictor.predict(chosen, options.interval_level)
        points.append(CurvePoint(budget_fraction=float(fraction), predicted=predicted.mean, lower=predicted.low,
                                 upper=predicted.high, n_paid=int(chosen.sum()),
                                 cost=float(problem.costs[chosen].sum())))
    return points
