"""`optimize`: maximise the PPM's prediction directly under the budget (beyond the paper).

For a quadratic PPM f(c) = b + w.c + c'Qc the change of adding, removing or swapping items is
exact and cheap: with g = w + 2Qc, adding row z changes f by z.g + z'Qz, and removing it by
-z.g + z'Qz, a swap (i out, j in) by their sum minus 2 z_i'Q z_j. The search starts from the
better of top-k and a block-greedy fill (blocks of items by exact marginal gain), then applies
the best improving move among the most promising items until none improves. A PPM without a
quadratic form (LightGBM) gets the block-greedy fill scored by the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyper_router.selection import RoutingProblem, best_sampled, fill_in_order, topk

N_BLOCKS = 16
SHORTLIST = 32  # items considered per side of a move
MAX_MOVES = 2000
TOLERANCE = 1e-12


@dataclass
class _State:
    """A selection and the quantities that make move gains O(1) per item."""

    chosen: np.ndarray
    used: np.ndarray  # per instance
    spent: float
    h: np.ndarray  # items @ g, g = w + 2Qc


def _marginal(problem: RoutingProblem, state: _State, self_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gain of adding each item, change from removing each item) at the current selection."""
    return state.h + self_q, -state.h + self_q


def _apply(state: _State, problem: RoutingProblem, zq: np.ndarray, add: list[int],
           remove: list[int]) -> None:
    delta = np.zeros(problem.items.shape[1])
    for item in add:
        state.chosen[item] = True
        state.used[problem.instance[item]] = True
        state.spent += problem.costs[item]
        delta += problem.items[item]
    for item in remove:
        state.chosen[item] = False
        state.used[problem.instance[item]] = False
        state.spent -= problem.costs[item]
        delta -= problem.items[item]
    state.h += 2.0 * (zq @ delta)  # g moves by 2Q(delta c), h = Z g


def _state(problem: RoutingProblem, chosen: np.ndarray, form) -> _State:
    counts = problem.counts(chosen)[0].astype(np.float64)
    used = np.zeros(problem.n_instances, dtype=bool)
    used[problem.instance[chosen]] = True
    return _State(chosen.copy(), used, float(problem.costs[chosen].sum()),
                  problem.items @ form.gradient(counts))


def _fits(problem: RoutingProblem, state: _State) -> np.ndarray:
    return ~state.chosen & ~state.used[problem.instance] & problem.affords(
        state.spent + problem.costs)


def block_greedy(problem: RoutingProblem, self_q: np.ndarray, zq: np.ndarray, form) -> np.ndarray:
    """Fills the budget in blocks, each block the best items by exact marginal gain per cost."""
    state = _state(problem, np.zeros(len(problem.costs), dtype=bool), form)
    block = max(1, int(np.ceil(problem.budget / problem.costs.mean() / N_BLOCKS)))
    while True:
        gains, _ = _marginal(problem, state, self_q)
        ratio = np.where(_fits(problem, state), gains / problem.costs, -np.inf)
        if not problem.exact_count:
            ratio[gains <= 0] = -np.inf  # with a money budget, spending is not an obligation
        best = _top(np.arange(len(ratio)), ratio, block)
        best = best[np.argsort(-ratio[best], kind="stable")]
        best = best[np.isfinite(ratio[best])]
        if len(best) == 0:
            return state.chosen
        taken = np.flatnonzero(fill_in_order(problem, best, state.chosen) & ~state.chosen)
        if len(taken) == 0:
            return state.chosen
        _apply(state, problem, zq, list(taken), [])


def _top_distinct(candidates: np.ndarray, values: np.ndarray, kinds: np.ndarray, k: int) -> np.ndarray:
    """The candidates with the k largest values, one per kind of item: items of one kind
    (same row, same cost) are interchangeable, and a shortlist of copies would hide every
    other kind from the move search. Deduplicating a generous top first keeps this O(n)
    unless a few kinds crowd the top."""
    pool = _top(candidates, values, 8 * k)
    _, first = np.unique(kinds[pool], return_index=True)
    if len(first) < k and len(pool) < len(candidates):
        pool = candidates
        _, first = np.unique(kinds[pool], return_index=True)
    return _top(pool[first], values, k)


def _top(candidates: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """The candidates with the k largest values (unordered)."""
    if len(candidates) <= k:
        return candidates
    return candidates[np.argpartition(-values[candidates], k)[:k]]


def _best_move(problem: RoutingProblem, state: _State, self_q: np.ndarray, zq: np.ndarray,
               kinds: np.ndarray) -> tuple[float, list[int], list[int]]:
    add_gain, remove_change = _marginal(problem, state, self_q)
    outside = np.flatnonzero(~state.chosen)
    inside = np.flatnonzero(state.chosen)
    best: tuple[float, list[int], list[int]] = (TOLERANCE, [], [])
    if len(outside) == 0:
        return best
    # An outside item whose instance is taken can only replace that instance's item, so it
    # is a different kind of candidate than a free copy of the same row.
    taken = state.used[problem.instance].astype(np.int64)
    j = _top_distinct(outside, add_gain, kinds * 2 + taken, SHORTLIST)
    if len(inside):
        i = _top_distinct(inside, remove_change, kinds, SHORTLIST)
        swap = remove_change[i][:, None] + add_gain[j][None, :] - 2.0 * (zq[i] @ problem.items[j].T)
        same_instance = problem.instance[i][:, None] == problem.instance[j][None, :]
        free = ~state.used[problem.instance[j]][None, :] | same_instance
        fits = problem.affords(state.spent - problem.costs[i][:, None] + problem.costs[j][None, :])
        swap = np.where(free & fits, swap, -np.inf)
        a, b = np.unravel_index(np.argmax(swap), swap.shape)
        if swap[a, b] > best[0]:
            best = (float(swap[a, b]), [int(j[b])], [int(i[a])])
    if not problem.exact_count:  # a money budget may also grow or shrink the set
        fits_add = _fits(problem, state)[j]
        if fits_add.any() and add_gain[j][fits_add].max() > best[0]:
            k = j[fits_add][int(np.argmax(add_gain[j][fits_add]))]
            best = (float(add_gain[k]), [int(k)], [])
        if len(inside) and remove_change[inside].max() > best[0]:
            k = inside[int(np.argmax(remove_change[inside]))]
            best = (float(remove_change[k]), [], [int(k)])
    return best


def item_kinds(problem: RoutingProblem) -> np.ndarray:
    """An id per distinct (row, cost): items of one kind are interchangeable in a move.
    Rows are hashed by a random 64-bit weighting of their nonzero pattern (every nonzero of a
    problem's rows has the same per-1,000 weight; collisions ~2^-64 per pair), which is far
    cheaper than sorting the rows themselves."""
    weights = np.random.default_rng(0).integers(1, 2**63, problem.items.shape[1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        row_hash = ((problem.items != 0).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
        keys = row_hash ^ (problem.costs.astype(np.float64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return np.unique(keys, return_inverse=True)[1].ravel()


def local_search(problem: RoutingProblem, chosen: np.ndarray, self_q: np.ndarray,
                 zq: np.ndarray, form, max_moves: int = MAX_MOVES) -> np.ndarray:
    state = _state(problem, chosen, form)
    kinds = item_kinds(problem)
    for _ in range(max_moves):
        gain, add, remove = _best_move(problem, state, self_q, zq, kinds)
        if not add and not remove:
            break
        _apply(state, problem, zq, add, remove)
    return state.chosen


def _black_box_greedy(problem: RoutingProblem) -> np.ndarray:
    """Block-greedy for a PPM without a quadratic form: marginal gains by batch prediction."""
    chosen = np.zeros(len(problem.costs), dtype=bool)
    block = max(1, int(np.ceil(problem.budget / problem.costs.mean() / N_BLOCKS)))
    while True:
        base = problem.counts(chosen)[0]
        state = _State(chosen, np.isin(np.arange(problem.n_instances), problem.instance[chosen]),
                       float(problem.costs[chosen].sum()), np.zeros(0))
        candidates = np.flatnonzero(_fits(problem, state))
        if len(candidates) == 0:
            return chosen
        gains = problem.ppm.predict(base + problem.items[candidates]) - problem.score(chosen)[0]
        if not problem.exact_count:
            candidates, gains = candidates[gains > 0], gains[gains > 0]
        order = candidates[np.argsort(-gains / problem.costs[candidates], kind="stable")[:block]]
        grown = fill_in_order(problem, order, chosen)
        if grown.sum() == chosen.sum():
            return chosen
        chosen = grown


def optimize(problem: RoutingProblem, n_candidates: int, rng: np.random.Generator) -> np.ndarray:
    """Local search from the best of: top-k, block greedy, and the best of the `n_candidates`
    knapsack mixes that `simulated` would draw with the same generator. A PPM need not be
    concave (a fitted quadratic often is not), so its optimum can sit at a corner that single
    swaps cannot reach from the greedy starts; the sampled start covers that, and makes the
    result at least as good as `simulated` by construction."""
    starts = [topk(problem)]
    if n_candidates:
        starts.append(best_sampled(problem, n_candidates, rng))
    form = problem.ppm.quadratic_form
    if form is None:
        starts.append(_black_box_greedy(problem))
        return max(starts, key=lambda chosen: float(problem.score(chosen)[0]))
    items = problem.items.astype(np.float64)
    zq = items @ form.quadratic if form.quadratic is not None else np.zeros_like(items)
    self_q = np.einsum("md,md->m", zq, items)
    starts.append(block_greedy(problem, self_q, zq, form))
    best_start = max(starts, key=lambda chosen: float(problem.score(chosen)[0]))
    return local_search(problem, best_start, self_q, zq, form)
