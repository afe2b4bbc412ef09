"""Routing strategies: which instances go to which annotation source under a budget.

Pure NumPy, no gRPC. A routing problem is a set of *items*, one per (instance, paid source)
pair; choosing an item routes its instance to that source, everything not chosen goes to the
free default source (the AI judge). Each item is a row in the PPM's count space (the
instance's binary features, in that source's columns), so a mix's count vector is the sum of
its chosen rows. With one paid source ("human") and unit costs this is exactly the paper's
setting: items are instances and the budget is a count.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from hyper.core.errors import InvalidArgument
from hyper.method.candidates import (
    Neighbourhoods,
    active_columns,
    count_vectors,
    knapsack_mixes,
    knapsack_neighbourhoods,
    knapsack_orders,
    neighbourhood_counts,
    neighbourhood_mask,
    per_thousand,
    walk_sums,
)
from hyper.method.performance_models import PerformanceModel

# Costs are floats: a selection whose cost exceeds the budget by rounding alone still fits.
BUDGET_SLACK = 1e-9
CHUNK = 100  # candidates per vectorised block: bounds memory at (CHUNK, items, active columns)


@dataclass
class RoutingProblem:
    items: np.ndarray  # (M, D) rows in the model's count space (features per 1,000 instances)
    instance: np.ndarray  # (M,) index of each item's instance
    costs: np.ndarray  # (M,) cost of each item, > 0
    budget: float  # in cost units
    n_instances: int
    model: PerformanceModel | None  # None: no PPM (the label-quality strategies need none)
    confidence: np.ndarray | None = None  # (n_instances,) AI judge confidence
    # Counts of what is routed to a paid source before any choice (pairs that can only go to
    # humans): part of every count vector, outside the items and the budget.
    offset: np.ndarray | None = None
    # Per instance, the error model's expected gain in label accuracy from a human label.
    label_gains: np.ndarray | None = None
    # What depends on the items and the model alone (the gains), computed once and shared by
    # the copies of the problem at other budgets (dataclasses.replace keeps the dict).
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def single_source(cls, bits: np.ndarray, model: PerformanceModel, budget: float,
                      costs: np.ndarray | None = None, confidence: np.ndarray | None = None):
        """One paid source over a dataset's binary features (rows made per-1,000 counts)."""
        n = bits.shape[0]
        return cls(per_thousand(bits), np.arange(n),
                   np.ones(n) if costs is None else np.asarray(costs, dtype=np.float64),
                   float(budget), n, model, confidence)

    @property
    def exact_count(self) -> bool:
        """One item per instance at unit cost: the budget is a count and is spent exactly."""
        return len(self.instance) == self.n_instances and bool(np.all(self.costs == 1.0))

    def counts(self, chosen: np.ndarray) -> np.ndarray:
        """Count vectors of one (M,) or many (N, M) boolean selections: one matrix product."""
        counts = count_vectors(chosen, self.items)
        return counts if self.offset is None else counts + self.offset

    def score(self, chosen: np.ndarray) -> np.ndarray:
        return self.ppm.predict(self.counts(chosen))

    @property
    def ppm(self) -> PerformanceModel:
        if self.model is None:
            raise InvalidArgument("strategy", "this strategy follows a PPM, and none is given")
        return self.model

    def feasible(self, chosen: np.ndarray) -> bool:
        picked = self.instance[chosen]
        return len(np.unique(picked)) == len(picked) and self.affords(self.costs[chosen].sum())

    def affords(self, spent):
        """Whether spending `spent` (a number or an array of them) stays within the budget."""
        return spent <= self.budget + BUDGET_SLACK


def item_gains(problem: RoutingProblem) -> np.ndarray:
    """Per-item gain: PPM(the item's row) - PPM(zero vector), as in the paper's top-k."""
    if "gains" not in problem.derived:
        problem.derived["gains"] = problem.ppm.gains(problem.items)
    return problem.derived["gains"]


def fill_in_order(problem: RoutingProblem, order: np.ndarray,
                  chosen: np.ndarray | None = None) -> np.ndarray:
    """Takes items in `order`, skipping those whose instance is taken or that do not fit."""
    if problem.exact_count and chosen is None:
        chosen = np.zeros(len(order), dtype=bool)
        chosen[order[: int(problem.budget)]] = True
        return chosen
    chosen = np.zeros(len(problem.costs), dtype=bool) if chosen is None else chosen.copy()
    used = np.zeros(problem.n_instances, dtype=bool)
    used[problem.instance[chosen]] = True
    spent = problem.costs[chosen].sum()
    for item in order:
        if not used[problem.instance[item]] and problem.affords(spent + problem.costs[item]):
            chosen[item] = True
            used[problem.instance[item]] = True
            spent += problem.costs[item]
    return chosen


def _by_ratio(values: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Descending value per unit cost; ties keep item order (stable)."""
    return np.argsort(-(values / costs), kind="stable")


def topk(problem: RoutingProblem) -> np.ndarray:
    """The largest gains (per unit cost) that fit the budget."""
    return fill_in_order(problem, _by_ratio(item_gains(problem), problem.costs))


def optimal_pos(problem: RoutingProblem) -> np.ndarray:
    """Every item with a positive gain, largest first; the budget is only a cap."""
    gains = item_gains(problem)
    order = _by_ratio(gains, problem.costs)
    order = order[gains[order] > 0]
    return _fill_capped(problem, order)


def _fill_capped(problem: RoutingProblem, order: np.ndarray) -> np.ndarray:
    """Like fill_in_order, but the budget is a cap even when it is a count."""
    if problem.exact_count:
        order = order[: int(problem.budget)]
        chosen = np.zeros(len(problem.costs), dtype=bool)
        chosen[order] = True
        return chosen
    return fill_in_order(problem, order)


def optimal_grad(problem: RoutingProblem, epsilon: float = 0.0) -> np.ndarray:
    """Items in gain order while the predicted score of the growing set still rises by more
    than `epsilon` (every prefix is scored exactly, in one batch); the budget is a cap."""
    order = _by_ratio(item_gains(problem), problem.costs)
    order = order[_fill_capped(problem, order)[order]]  # the feasible ones, still in gain order
    prefix_counts = np.cumsum(problem.items[order], axis=0, dtype=np.float64)
    start = np.zeros(problem.items.shape[1]) if problem.offset is None else problem.offset
    scores = problem.ppm.predict(np.vstack([np.zeros(problem.items.shape[1]), prefix_counts]) + start)
    rises = np.diff(scores) > epsilon
    stop = len(order) if rises.all() else int(np.argmin(rises))
    chosen = np.zeros(len(problem.costs), dtype=bool)
    chosen[order[:stop]] = True
    return chosen


def random_mix(problem: RoutingProblem, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random items that fit the budget: the baseline every strategy must beat."""
    return fill_in_order(problem, rng.permutation(len(problem.costs)))


def uncertainty(problem: RoutingProblem) -> np.ndarray:
    """Humans where the AI judge is least confident (CoAnnotating-style)."""
    if problem.confidence is None or np.isnan(problem.confidence).any():
        raise InvalidArgument("dataset.judge_confidence",
                              "the uncertainty strategy needs a judge confidence on every instance")
    item_confidence = problem.confidence[problem.instance]
    return fill_in_order(problem, np.lexsort((problem.costs, item_confidence)))


def error_model(problem: RoutingProblem) -> np.ndarray:
    """The largest expected gains in label accuracy (per unit cost) that fit the budget."""
    if problem.label_gains is None:
        raise InvalidArgument("strategy", "the error_model strategy needs an error model")
    return fill_in_order(problem, _by_ratio(problem.label_gains[problem.instance], problem.costs))


def cold_start(problem: RoutingProblem, exploration: float, rng: np.random.Generator) -> np.ndarray:
    """A first round without a model: a share of the budget on a uniformly random sample (the
    labels a first error model learns from, unbiased), the rest where the judge is least
    confident (at random where no confidence is known)."""
    sample = fill_in_order(dataclasses.replace(problem, budget=exploration * problem.budget),
                           rng.permutation(len(problem.costs)))
    if problem.confidence is None or np.isnan(problem.confidence).any():
        return fill_in_order(problem, rng.permutation(len(problem.costs)), sample)
    return fill_in_order(problem, np.lexsort((problem.costs, problem.confidence[problem.instance])), sample)


# ---------------------------------------------------------------- the paper's knapsack sampler


def fill_many(problem: RoutingProblem, orders: np.ndarray) -> np.ndarray:
    """fill_in_order for many orders at once, under costs or several sources."""
    n_candidates, n_items = orders.shape
    chosen = np.zeros((n_candidates, n_items), dtype=bool)
    rows = np.arange(n_candidates)
    used = np.zeros((n_candidates, problem.n_instances), dtype=bool)
    spent = np.zeros(n_candidates)
    for position in range(n_items):  # one step over all candidates at a time
        item = orders[:, position]
        instance, cost = problem.instance[item], problem.costs[item]
        take = ~used[rows, instance] & problem.affords(spent + cost)
        chosen[rows[take], item[take]] = True
        used[rows[take], instance[take]] = True
        spent += np.where(take, cost, 0.0)
    return chosen


def best_sampled(problem: RoutingProblem, n_candidates: int, rng: np.random.Generator) -> np.ndarray:
    """The best by predicted score of `n_candidates` knapsack candidate selections at the
    problem's budget, drawn and scored CHUNK at a time: memory stays at (CHUNK, M) whatever
    the count (all at once, 10^6 candidates over 10^4 items would be 10 GB)."""
    active = active_columns(problem.items)

    def block(size: int) -> np.ndarray:
        if problem.exact_count:
            return knapsack_mixes(problem.items, size, int(problem.budget), rng, active)
        return fill_many(problem, knapsack_orders(problem.items, size, rng, active))

    best, best_score = None, -np.inf
    for start in range(0, n_candidates, CHUNK):
        candidates = block(min(CHUNK, n_candidates - start))
        scores = problem.score(candidates)
        top = int(np.argmax(scores))
        if best is None or scores[top] > best_score:  # the first of equals, as one argmax over all
            best, best_score = candidates[top], scores[top]
    assert best is not None  # n_candidates >= 1 is checked by the callers
    return best


def simulated(problem: RoutingProblem, n_candidates: int, rng: np.random.Generator
              ) -> np.ndarray:
    """Best of `n_candidates` knapsack candidates by predicted score (the paper's N = 500):
    independent ones up to INDEPENDENT_CANDIDATES, beyond that walks and their neighbours."""
    if n_candidates < 1:
        raise InvalidArgument("n_candidates", "must be at least 1")
    if n_candidates > INDEPENDENT_CANDIDATES and problem.exact_count and 0 < problem.budget < len(problem.items):
        return best_neighbour(problem, n_candidates, rng)
    return best_sampled(problem, n_candidates, rng)


# Past this many candidates an independent one (a pass over every row) costs far more than
# scoring it; neighbours in the walks' boundary groups cost O(features) each.
INDEPENDENT_CANDIDATES = 10_000
NEIGHBOURHOOD_BLOCK = 32  # walks per scoring block: bounds memory at (block, steps, features)


def best_neighbour(problem: RoutingProblem, n_candidates: int, rng: np.random.Generator) -> np.ndarray:
    """Best of about `n_candidates` knapsack candidates: sqrt(n) walks, each followed by as
    many swaps inside its boundary group (hyper.method.candidates.knapsack_neighbourhoods)."""
    n_walks = int(np.ceil(np.sqrt(n_candidates)))
    hoods = knapsack_neighbourhoods(problem.items, n_walks, -(-n_candidates // n_walks) - 1,
                                    int(problem.budget), rng)
    if not len(hoods.masks):  # every walk's budget ends on a group's end: no neighbour exists
        return best_sampled(problem, n_walks, rng)
    return neighbourhood_mask(hoods, *best_in_neighbourhoods(problem, hoods)[1])


def best_in_neighbourhoods(problem: RoutingProblem, hoods: Neighbourhoods) -> tuple[float, tuple[int, int]]:
    """The best predicted score among the candidates, and its (walk, step)."""
    score = NeighbourScorer(problem, hoods)
    best, where = -np.inf, (0, 0)
    for start in range(0, len(hoods.masks), NEIGHBOURHOOD_BLOCK):
        scores = score(slice(start, start + NEIGHBOURHOOD_BLOCK))
        walk, step = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[walk, step] > best:
            best, where = float(scores[walk, step]), (start + int(walk), int(step))
    return best, where


class NeighbourScorer:
    """Predicted scores of neighbourhood candidates. A quadratic form f(c) = b + c.(w + Qc) is
    scored from running sums of both c and Qc (each row times Q, gathered like the rows):
    O(features) per candidate instead of a (features x features) product."""

    def __init__(self, problem: RoutingProblem, hoods: Neighbourhoods):
        self.problem = problem
        self.hoods = hoods
        offset = np.zeros(problem.items.shape[1]) if problem.offset is None else problem.offset
        self.form = problem.ppm.quadratic_form
        self.quadratic = None if self.form is None else self.form.quadratic
        self.walk_counts = walk_sums(hoods, problem.items) + offset.astype(np.float32)
        if self.form is not None and self.quadratic is not None:
            self.row_slopes = problem.items @ self.quadratic  # Q symmetric: (Qc)' = c'Q
            self.walk_slopes = (self.walk_counts @ self.quadratic + self.form.linear).astype(np.float32)

    def __call__(self, walks: slice) -> np.ndarray:
        """(walks, steps + 1) predicted scores of the candidates of `walks`."""
        counts = neighbourhood_counts(self.hoods, self.problem.items, walks, self.walk_counts)
        if self.form is None:
            return self.problem.ppm.predict(counts.reshape(-1, counts.shape[-1])).reshape(counts.shape[:2])
        if self.quadratic is None:
            return self.form.intercept + counts @ self.form.linear
        slopes = neighbourhood_counts(self.hoods, self.row_slopes, walks, self.walk_slopes)
        return self.form.intercept + np.einsum("wkf,wkf->wk", counts, slopes, dtype=np.float64)
