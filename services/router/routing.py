"""The Route use case: features from the tagger, the PPM from ppm, a selection under budget."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from hyper import dataset_files
from hyper.clients import Tagged
from hyper.errors import InvalidArgument
from hyper.features import FeatureMatrix, column_positions
from hyper.memo import Memo
from hyper.performance_models import PerformanceModel
from hyper.route_api import AI, DEFAULT_SOURCE, STRATEGIES, Budget, CostModel, CurvePoint, RouteOptions, Source
from hyper.router import selection
from hyper.router.optimize import optimize
from hyper.router.selection import RoutingProblem
from hyper.schema import Dataset, DatasetRef, Instance

log = logging.getLogger(__name__)

TOKEN_DIMENSIONS = ("prompt_len", "len_longer", "len_shorter")


class TaggerPeer(Protocol):
    """What the router needs of the tagger (the gRPC client, or a fake in tests)."""

    def feature_set_version(self) -> str: ...

    def tag_with_raw(self, instances: list[Instance]) -> Tagged: ...

    def annotate(self, instances: list[Instance]) -> list: ...


class PPMPeer(Protocol):
    """What the router needs of ppm: the latest version's name, and a model's artifact."""

    def latest_version(self, model: str = "") -> str: ...

    def artifact(self, model: str = "", version: str = "") -> dict: ...


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
    unknown = [n for n in model.feature_names if n.split("|")[-1] not in set(matrix.feature_names)]
    if unknown:
        raise InvalidArgument("ppm_model", f"uses features the tagger does not produce: {unknown[:5]}")
    blocks = []
    for k, source in enumerate(sources):
        block = np.zeros((matrix.n_instances, len(model.feature_names)), dtype=np.float32)
        model_columns = [(j, name) for j, name in enumerate(model.feature_names)
                         if name == source_column(source.name, name.split("|")[-1])]
        if not model_columns:
            raise InvalidArgument(f"sources[{k}].name",
                                  f"the PPM has no feature columns for source {source.name!r}")
        columns, names = zip(*model_columns, strict=True)
        features = [name.split("|")[-1] for name in names]
        block[:, list(columns)] = matrix.bits[:, column_positions(matrix.feature_names, features,
                                                                    "features")]
        blocks.append(block)
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
    for source in options.sources:
        flat = (human_costs(options.human_cost_model, matrix, raw)
                if source.name == DEFAULT_SOURCE and options.human_cost_model else
                np.full(len(dataset), source.cost))
        blocks.append([i.costs.get(source.name, c) for i, c in zip(dataset.instances, flat, strict=True)])
    return np.concatenate(blocks).astype(np.float64)


def budget_in_cost_units(budget: Budget, costs: np.ndarray, n: int, uniform: bool) -> tuple[float, bool]:
    """(budget, whether costs count); a count ignores costs, a fraction of varying costs is a
    fraction of routing everything to the first paid source. (`Budget` has checked its own
    ranges; what depends on the dataset is checked here.)"""
    if budget.count is not None:
        if budget.count > n:
            raise InvalidArgument("budget.count", f"{budget.count} is more than the {n} instances")
        return float(budget.count), False
    if budget.money is not None:
        return float(budget.money), True
    assert budget.fraction is not None
    if uniform:
        return float(round(budget.fraction * n)), False
    return budget.fraction * float(costs[:n].sum()), True


Solver = Callable[[RoutingProblem, RouteOptions, np.random.Generator], np.ndarray]

# One solver per name of the registry in hyper.route_api (a test checks they match).
SOLVERS: dict[str, Solver] = {
    "topk": lambda problem, options, rng: selection.topk(problem),
    "simulated": lambda problem, options, rng: selection.simulated(problem, options.n_candidates, rng),
    "optimal_pos": lambda problem, options, rng: selection.optimal_pos(problem),
    "optimal_grad": lambda problem, options, rng: selection.optimal_grad(problem, options.epsilon),
    "random": lambda problem, options, rng: selection.random_mix(problem, rng),
    "uncertainty": lambda problem, options, rng: selection.uncertainty(problem),
    "optimize": lambda problem, options, rng: optimize(problem, options.n_candidates, rng),
}
assert SOLVERS.keys() == STRATEGIES.keys()


def solve(problem: RoutingProblem, options: RouteOptions) -> np.ndarray:
    return SOLVERS[options.strategy](problem, options, np.random.default_rng(options.seed))


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
        points.append(CurvePoint(budget_fraction=float(fraction),
                                 predicted=float(problem.model.predict(counts)[0]),
                                 lower=float(lower[0]), upper=float(upper[0]),
                                 n_paid=int(chosen.sum()), cost=float(problem.costs[chosen].sum())))
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


def file_identity(ref: DatasetRef) -> tuple | None:
    """What decides a dataset read from a file: the file's identity and how it is read.
    None when the file cannot be stat'ed (reading it then reports the error)."""
    try:
        stat = os.stat(ref.path)
    except OSError:
        return None
    return (os.path.realpath(ref.path), stat.st_mtime_ns, stat.st_size, ref)


class Router:
    """The Route use case. Memos make a repeated Route cheap: a dataset file is read again,
    and the tagger asked again, only when the file or the tagger's feature set has changed."""

    def __init__(self, tagger: TaggerPeer, ppm: PPMPeer, memo_size: int = 8):
        self.tagger = tagger
        self.ppm = ppm
        self.datasets: Memo[Dataset] = Memo(memo_size)
        self.tags: Memo[Tagged] = Memo(memo_size)
        self.models: Memo[tuple[PerformanceModel, str]] = Memo(16)

    def load_dataset(self, ref: DatasetRef) -> tuple[Dataset, Hashable]:
        """The dataset a file holds, and a key that changes whenever its content may have."""
        identity = file_identity(ref)
        if identity is None:
            dataset = dataset_files.read_dataset_ref(ref)
            return dataset, dataset_fingerprint(dataset)
        return self.datasets.get_or_compute(identity, lambda: dataset_files.read_dataset_ref(ref)), identity

    def tag(self, dataset: Dataset, key: Hashable) -> Tagged:
        # The tagger's feature-set version is part of the key: a new tagger means new features.
        version = self.tagger.feature_set_version()
        return self.tags.get_or_compute((key, version), lambda: self.tagger.tag_with_raw(dataset.instances))

    def model(self, name: str, version: str) -> tuple[PerformanceModel, str]:
        # Versions are immutable, so a resolved one is cached; "latest" is resolved per call.
        resolved = version or self.ppm.latest_version(name)
        return self.models.get_or_compute(
            (name, resolved), lambda: (PerformanceModel.from_json(self.ppm.artifact(name, resolved)), resolved))

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
        if not dataset.instances:
            raise InvalidArgument("dataset", "has no instances")
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
