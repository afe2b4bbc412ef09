"""The routing problem a Route call poses: items (instance x paid source) in the PPM's count
space, their costs, the budget in cost units, and the pairs that can only go to humans."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from hyper.api.clients import Tagged
from hyper.api.messages import DEFAULT_SOURCE, Budget, CostModel, RouteOptions, Source
from hyper.core.errors import InvalidArgument
from hyper.core.features import FeatureMatrix, column_positions
from hyper.core.schema import Dataset
from hyper.method.candidates import COUNT_SCALE, source_column
from hyper.method.performance_models import PerformanceModel
from hyper_router.selection import RoutingProblem

TOKEN_DIMENSIONS = ("prompt_len", "len_longer", "len_shorter")


def paid_items(matrix: FeatureMatrix, model: PerformanceModel, sources: list[Source]) -> np.ndarray:
    """(n_sources * n, D) rows in the model's columns: block s holds every instance as routed to
    source s. A model column the tagger does not produce is an error; a tagger feature the model
    does not use is simply not counted."""
    unknown = [n for n in model.feature_names if n.split("|")[-1] not in set(matrix.feature_names)]
    if unknown:
        raise InvalidArgument("ppm_model", f"uses features the tagger does not produce: {unknown[:5]}")
    blocks = []
    for k, source in enumerate(sources):
        model_columns = [(j, name) for j, name in enumerate(model.feature_names)
                         if name == source_column(source.name, name.split("|")[-1], DEFAULT_SOURCE)]
        if not model_columns:
            raise InvalidArgument(f"sources[{k}].name",
                                  f"the PPM has no feature columns for source {source.name!r}")
        columns, names = zip(*model_columns, strict=True)
        features = [name.split("|")[-1] for name in names]
        # Each model column's tagger column (-1: another source's), gathered whole rows at a time:
        # writing into scattered columns of a million rows took a second.
        tagger_column = np.full(len(model.feature_names), -1)
        tagger_column[list(columns)] = column_positions(matrix.feature_names, features, "features")
        block = matrix.bits.take(np.maximum(tagger_column, 0), axis=1).astype(np.float32)
        block *= tagger_column >= 0
        blocks.append(block)
    return blocks[0] if len(blocks) == 1 else np.vstack(blocks)


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
    own_costs = any(i.costs for i in dataset.instances)
    for source in options.sources:
        flat = (human_costs(options.human_cost_model, matrix, raw)
                if source.name == DEFAULT_SOURCE and options.human_cost_model else
                np.full(len(dataset), source.cost))
        blocks.append([i.costs.get(source.name, c) for i, c in zip(dataset.instances, flat, strict=True)]
                      if own_costs else flat)
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


@dataclass
class PaidItems:
    """What a Route's problem is made of whatever its budget (memoised by the router: it is
    most of a repeated Route's work on a large file)."""

    problem: RoutingProblem  # with budget 0 and unit costs
    costs: np.ndarray  # every item's cost
    uniform: bool  # one paid source, every cost 1: a budget is a count


def paid_problem(dataset: Dataset, options: RouteOptions, tagged: Tagged, model: PerformanceModel | None
                 ) -> PaidItems:
    """Item rows are per-1,000 counts of this dataset, the units the PPM was fitted in (none
    without a PPM: the label-quality strategies rank pairs, not mixes)."""
    n = len(dataset)
    if model is None:
        items = np.zeros((n * len(options.sources), 0), dtype=np.float32)
    else:
        items = paid_items(tagged.features, model, options.sources)
        items *= np.float32(COUNT_SCALE / n)
    costs = item_costs(dataset, options, tagged.features, tagged.raw)
    uniform = len(options.sources) == 1 and bool(np.all(costs == 1.0))
    return PaidItems(RoutingProblem(items, np.tile(np.arange(n), len(options.sources)), np.ones_like(costs), 0.0,
                                    n, model), costs, uniform)


def build_problem(paid: PaidItems, budget: Budget, confidence: np.ndarray | None = None,
                  label_gains: np.ndarray | None = None) -> tuple[RoutingProblem, float]:
    """The routing problem and the budget's 100% in its units (instances or cost)."""
    n = paid.problem.n_instances
    amount, costed = budget_in_cost_units(budget, paid.costs, n, paid.uniform)
    problem = dataclasses.replace(paid.problem, budget=amount, confidence=confidence, label_gains=label_gains,
                                  costs=paid.costs if costed else paid.problem.costs)
    return problem, float(paid.costs[:n].sum()) if costed else float(n)


class ForcedSplit:
    """A problem whose `forced` instances can only go to humans (no AI label): they take their
    first-source item before anything is chosen. What is left to choose is a smaller problem
    whose count vectors start from the forced items' counts and whose budget is what they
    leave; its choices map back onto the whole problem."""

    def __init__(self, problem: RoutingProblem, forced: np.ndarray):
        self.problem = problem
        self.forced = forced  # per instance
        self.forced_items = np.flatnonzero(forced)  # block 0: the first paid source
        self.kept_items = ~forced[problem.instance]
        self.forced_cost = float(problem.costs[self.forced_items].sum())
        if not len(self.forced_items):  # the common case: the whole problem, not a copy of it
            self.remaining = problem
            return
        renumbered = np.cumsum(~forced) - 1
        self.remaining = RoutingProblem(
            problem.items[self.kept_items], renumbered[problem.instance[self.kept_items]],
            problem.costs[self.kept_items], problem.budget - self.forced_cost, int((~forced).sum()),
            problem.model, None if problem.confidence is None else problem.confidence[~forced],
            offset=problem.items[self.forced_items].sum(axis=0, dtype=np.float64),
            label_gains=None if problem.label_gains is None else problem.label_gains[~forced])

    def at_budget(self, budget: float) -> RoutingProblem:
        """What is left to choose when the whole problem's budget is `budget`."""
        return dataclasses.replace(self.remaining, budget=max(0.0, budget - self.forced_cost))

    def whole(self, chosen_remaining: np.ndarray) -> np.ndarray:
        """A choice of the remaining problem, with the forced items, as a choice of the whole."""
        if self.remaining is self.problem:
            return chosen_remaining
        chosen = np.zeros(len(self.problem.costs), dtype=bool)
        chosen[self.kept_items] = chosen_remaining
        chosen[self.forced_items] = True
        return chosen


def split_forced(problem: RoutingProblem, forced: np.ndarray, ai_source: str) -> ForcedSplit:
    split = ForcedSplit(problem, forced)
    if not problem.affords(split.forced_cost):
        raise InvalidArgument("budget", f"{len(split.forced_items)} pairs have no label_{ai_source} "
                                        f"and can only go to humans; the budget does not cover them")
    return split


