"""The Route use case: features from the tagger, the PPM from ppm, a selection under budget."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Hashable

import numpy as np

from hyper import wire
from hyper.clients import PPMClient, Tagged, TaggerClient
from hyper.errors import InvalidArgument
from hyper.features import FeatureMatrix
from hyper.performance_models import PerformanceModel
from hyper.router import selection
from hyper.router.memo import Memo, file_identity
from hyper.router.optimize import optimize
from hyper.router.selection import RoutingProblem
from hyper.schema import Dataset
from hyper.v1 import common_pb2

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "human"
AI = "ai"
TOKEN_DIMENSIONS = ("prompt_len", "len_longer", "len_shorter")


@dataclass
class Source:
    name: str
    cost: float = 1.0


@dataclass
class CostModel:
    base: float = 0.0
    per_1k_tokens: float = 0.0
    feature_costs: dict[str, float] = field(default_factory=dict)


@dataclass
class Budget:
    fraction: float | None = None
    count: int | None = None
    money: float | None = None


@dataclass
class RouteOptions:
    strategy: str = "topk"
    seed: int = 0
    n_candidates: int = selection.DEFAULT_CANDIDATES
    ppm_model: str = ""
    ppm_version: str = ""
    epsilon: float = 0.0
    interval_level: float = 0.9
    budget_curve: bool = False
    curve_points: int = 11
    sources: list[Source] = field(default_factory=lambda: [Source(DEFAULT_SOURCE)])
    human_cost_model: CostModel | None = None


@dataclass
class CurvePoint:
    budget_fraction: float
    predicted: float
    lower: float
    upper: float
    n_paid: int
    cost: float


@dataclass
class RoutePlan:
    ids: list[str]
    routes: list[str]  # per instance: a paid source's name or "ai"
    gains: np.ndarray  # per instance, of its (first) paid source
    costs: np.ndarray  # per instance, what its route costs
    predicted_score: float
    interval: tuple[float, float]
    ppm_version: str
    count_vector: np.ndarray
    feature_names: list[str]
    budget_fraction: float
    curve: list[CurvePoint] = field(default_factory=list)


def source_column(source: str, feature: str) -> str:
    """The PPM column counting `feature` among instances routed to `source`."""
    return feature if source == DEFAULT_SOURCE else f"{source}|{feature}"


def paid_items(matrix: FeatureMatrix, model: PerformanceModel, sources: list[Source]) -> np.ndarray:
    """(n_sources * n, D) rows in the model's columns: block s holds every instance as routed to
    source s. A model column the tagger does not produce is an error; a tagger feature the model
    does not use is simply not counted."""
    column = {name: j for j, name in enumerate(model.feature_names)}
    known = set(matrix.feature_names)
    blocks = []
    for k, source in enumerate(sources):
        block = np.zeros((matrix.n_instances, len(model.feature_names)), dtype=np.float32)
        pairs = [(i, column[source_column(source.name, f)]) for i, f in enumerate(matrix.feature_names)
                 if source_column(source.name, f) in column]
        if not pairs:
            raise InvalidArgument(f"sources[{k}].name",
                                  f"the PPM has no feature columns for source {source.name!r}")
        tagger_cols, model_cols = map(list, zip(*pairs))
        block[:, model_cols] = matrix.bits[:, tagger_cols]
        blocks.append(block)
    unknown = [n for n in model.feature_names if n.split("|")[-1] not in known]
    if unknown:
        raise InvalidArgument("ppm_model", f"uses features the tagger does not produce: {unknown[:5]}")
    return np.vstack(blocks)


def human_costs(model: CostModel, matrix: FeatureMatrix, raw: dict[str, np.ndarray]) -> np.ndarray:
    tokens = sum(raw[d] for d in TOKEN_DIMENSIONS) if model.per_1k_tokens else 0.0
    index = {name: j for j, name in enumerate(matrix.feature_names)}
    unknown = [name for name in model.feature_costs if name not in index]
    if unknown:
        raise InvalidArgument("human_cost_model.feature_costs", f"unknown features {unknown[:5]}")
    extra = sum(matrix.bits[:, index[n]] * c for n, c in model.feature_costs.items())
    costs = model.base + model.per_1k_tokens * tokens / 1000.0 + extra
    costs = np.broadcast_to(np.asarray(costs, dtype=np.float64), (matrix.n_instances,)).copy()
    if (costs <= 0).any():
        raise InvalidArgument("human_cost_model", "gives a cost <= 0 to some instance")
    return costs


def item_costs(dataset: Dataset, options: RouteOptions, matrix: FeatureMatrix,
               raw: dict[str, np.ndarray]) -> np.ndarray:
    """Cost of every item: the instance's own cost for the source, else the source's rate."""
    blocks = []
    for k, source in enumerate(options.sources):
        if not source.cost > 0:
            raise InvalidArgument(f"sources[{k}].cost", "must be > 0")
        flat = (human_costs(options.human_cost_model, matrix, raw)
                if source.name == DEFAULT_SOURCE and options.human_cost_model else
                np.full(len(dataset), source.cost))
        blocks.append([i.costs.get(source.name, c) for i, c in zip(dataset.instances, flat)])
    return np.concatenate(blocks).astype(np.float64)


def budget_in_cost_units(budget: Budget, costs: np.ndarray, n: int, uniform: bool) -> tuple[float, bool]:
    """(budget, whether costs count); a count ignores costs, a fraction of varying costs is a
    fraction of routing everything to the first paid source."""
    given = [b for b in (budget.fraction, budget.count, budget.money) if b is not None]
    if len(given) != 1:
        raise InvalidArgument("budget", "give exactly one of a fraction, a count or money")
    if budget.count is not None:
        if not 0 <= budget.count <= n:
            raise InvalidArgument("budget.count", f"{budget.count} is not in [0, {n}]")
        return float(budget.count), False
    if budget.money is not None:
        if not budget.money >= 0:
            raise InvalidArgument("budget.money", f"{budget.money} must be >= 0")
        return float(budget.money), True
    if not 0.0 <= budget.fraction <= 1.0:
        raise InvalidArgument("budget.fraction", f"{budget.fraction} is not in [0, 1]")
    if uniform:
        return float(round(budget.fraction * n)), False
    return budget.fraction * float(costs[:n].sum()), True


def solve(problem: RoutingProblem, options: RouteOptions) -> np.ndarray:
    rng = np.random.default_rng(options.seed)
    strategies = {
        "topk": lambda: selection.topk(problem),
        "simulated": lambda: selection.simulated(problem, options.n_candidates, rng),
        "optimal_pos": lambda: selection.optimal_pos(problem),
        "optimal_grad": lambda: selection.optimal_grad(problem, options.epsilon),
        "random": lambda: selection.random_mix(problem, rng),
        "uncertainty": lambda: selection.uncertainty(problem),
        "optimize": lambda: optimize(problem, options.n_candidates, rng),
    }
    return strategies[options.strategy]()


def _validate(options: RouteOptions, dataset: Dataset) -> None:
    if options.strategy not in selection.STRATEGIES:
        raise InvalidArgument("strategy", f"{options.strategy!r} is not one of {selection.STRATEGIES}")
    if not dataset.instances:
        raise InvalidArgument("dataset", "has no instances")
    if not 0.0 < options.interval_level < 1.0:
        raise InvalidArgument("interval_level", f"{options.interval_level} is not in (0, 1)")
    if not 2 <= options.curve_points <= 101:
        raise InvalidArgument("curve_points", f"{options.curve_points} is not in [2, 101]")
    names = [s.name for s in options.sources]
    if not names or len(set(names)) != len(names) or AI in names:
        raise InvalidArgument("sources", f"need distinct paid sources other than {AI!r}: {names}")


def _per_instance(problem: RoutingProblem, chosen: np.ndarray, gains: np.ndarray,
                  sources: list[Source]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each instance's route, the gain of its paid item (first source if AI), its cost."""
    n = problem.n_instances
    routes, item_of = [AI] * n, np.arange(n)  # the first source's item by default
    for item in np.flatnonzero(chosen):
        instance = problem.instance[item]
        routes[instance] = sources[item // n].name
        item_of[instance] = item
    paid = np.array([route != AI for route in routes])
    return routes, gains[item_of], np.where(paid, problem.costs[item_of], 0.0)


def budget_curve(problem: RoutingProblem, options: RouteOptions, total: float) -> list[CurvePoint]:
    points = []
    for fraction in np.linspace(0.0, 1.0, options.curve_points):
        budget = round(fraction * total) if problem.exact_count else fraction * total
        at_budget = dataclasses.replace(problem, budget=float(budget))
        chosen = solve(at_budget, options)
        counts = at_budget.counts(chosen)
        lower, upper = problem.model.predict_interval(counts, options.interval_level)
        points.append(CurvePoint(float(fraction), float(problem.model.predict(counts)[0]),
                                 float(lower[0]), float(upper[0]), int(chosen.sum()),
                                 float(problem.costs[chosen].sum())))
    return points


def build_problem(dataset: Dataset, budget: Budget, options: RouteOptions, tagged: Tagged,
                  model: PerformanceModel, confidence: np.ndarray | None = None
                  ) -> tuple[RoutingProblem, float]:
    """The routing problem and the budget's 100% in its units (instances or cost)."""
    n = len(dataset)
    items = paid_items(tagged.features, model, options.sources)
    costs = item_costs(dataset, options, tagged.features, tagged.raw)
    uniform = len(options.sources) == 1 and bool(np.all(costs == 1.0))
    amount, costed = budget_in_cost_units(budget, costs, n, uniform)
    problem = RoutingProblem(items, np.tile(np.arange(n), len(options.sources)),
                             costs if costed else np.ones_like(costs), amount, n, model, confidence)
    return problem, float(costs[:n].sum()) if costed else float(n)


def dataset_fingerprint(dataset: Dataset) -> str:
    return hashlib.sha256("\n".join(i.content_key() + i.id for i in dataset.instances)
                          .encode()).hexdigest()


class Router:
    def __init__(self, tagger: TaggerClient, ppm: PPMClient, memo_size: int = 8):
        self.tagger = tagger
        self.ppm = ppm
        self.datasets = Memo(memo_size)
        self.tags = Memo(memo_size)

    def load_dataset(self, message: common_pb2.Dataset) -> tuple[Dataset, Hashable]:
        """The dataset and a key that changes whenever its content may have."""
        identity = file_identity(message.ref) if message.WhichOneof("source") == "ref" else None
        if identity is None:
            dataset = wire.dataset_from_proto(message)
            return dataset, dataset_fingerprint(dataset)
        return self.datasets.get_or_compute(identity, lambda: wire.dataset_from_proto(message)), identity

    def tag(self, dataset: Dataset, key: Hashable) -> Tagged:
        # The tagger's feature-set version is part of the key: a new tagger means new features.
        version = self.tagger.feature_set_version()
        return self.tags.get_or_compute((key, version), lambda: self.tagger.tag_with_raw(dataset.instances))

    @functools.lru_cache(maxsize=16)
    def _model(self, model: str, version: str) -> tuple[PerformanceModel, str]:
        return self.ppm.artifact(model, version)

    def model(self, name: str, version: str) -> tuple[PerformanceModel, str]:
        # Versions are immutable, so a resolved one is cached; "latest" is resolved per call.
        return self._model(name, version or self.ppm.latest_version(name))

    def judge_confidence(self, dataset: Dataset) -> np.ndarray:
        """The dataset's AI-judge confidences; the tagger's judge fills in missing ones."""
        given = np.array([np.nan if i.judge_confidence is None else i.judge_confidence
                          for i in dataset.instances])
        if not np.isnan(given).any():
            return given
        judged = self.tagger.annotate(dataset.instances)  # not memoised: the judge may be retrained
        return np.where(np.isnan(given), [j.confidence for j in judged], given)

    def route(self, dataset: Dataset, budget: Budget, options: RouteOptions,
              dataset_key: Hashable | None = None) -> RoutePlan:
        _validate(options, dataset)
        key = dataset_key or dataset_fingerprint(dataset)
        tagged = self.tag(dataset, key)
        model, version = self.model(options.ppm_model, options.ppm_version)
        confidence = self.judge_confidence(dataset) if options.strategy == "uncertainty" else None
        problem, total = build_problem(dataset, budget, options, tagged, model, confidence)
        chosen = solve(problem, options)
        routes, gains, costs = _per_instance(problem, chosen, selection.item_gains(problem),
                                             options.sources)
        counts = problem.counts(chosen)
        lower, upper = model.predict_interval(counts, options.interval_level)
        spent = chosen.sum() if problem.exact_count else problem.costs[chosen].sum()
        plan = RoutePlan(tagged.features.instance_ids, routes, gains, costs,
                         float(model.predict(counts)[0]), (float(lower[0]), float(upper[0])),
                         version, counts[0], model.feature_names, float(spent / max(total, 1e-12)))
        if options.budget_curve:
            plan.curve = budget_curve(problem, options, total)
        log.info("routed", extra={"strategy": options.strategy, "n_instances": len(dataset),
                                  "n_paid": int(chosen.sum()), "predicted_score": plan.predicted_score})
        return plan
