"""Candidate hybrid mixes: the paper's knapsack over features, and their count vectors.

Shared by the training loop (mixes at random budgets to train proxy RMs on) and the router
(mixes at the requested budget to pick the best of).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Count vectors count per 1,000 instances of the dataset a mix is drawn from: a PPM fitted on
# one dataset then applies to another of a different size (the paper's proxy sets had a fixed
# size, so raw counts served it).
COUNT_SCALE = 1000.0


def per_thousand(bits: np.ndarray, n_instances: int | None = None) -> np.ndarray:
    """Feature rows weighted so that summing a mix's rows gives its count vector per 1,000
    instances of a dataset of `n_instances` (default: the rows given)."""
    n = len(bits) if n_instances is None else n_instances
    return np.asarray(bits, dtype=np.float32) * np.float32(COUNT_SCALE / max(n, 1))


def active_columns(bits: np.ndarray) -> np.ndarray:
    """(n, A) column indices of each row's features, padded with n_columns (one past the end)."""
    rows, columns = np.nonzero(np.asarray(bits))
    per_row = np.bincount(rows, minlength=bits.shape[0])
    width = max(1, int(per_row.max(initial=0)))
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    padded = np.full((bits.shape[0], width), bits.shape[1], dtype=np.int32)
    padded[rows, slot] = columns
    return padded


def knapsack_keys(bits: np.ndarray, n_candidates: int, rng: np.random.Generator,
                  active: np.ndarray | None = None) -> np.ndarray:
    """(n_candidates, n) sort keys whose ascending orders are knapsack walks (see below)."""
    active = active_columns(bits) if active is None else active
    n_columns = bits.shape[1]
    # Positions in the smallest integer type: the (candidates, rows, features) gather is the
    # cost here, and bytes moved are what it costs.
    dtype = np.uint8 if n_columns < 255 else np.uint16
    positions = rng.permuted(np.tile(np.arange(n_columns, dtype=dtype), (n_candidates, 1)), axis=1)
    positions = np.hstack([positions, np.full((n_candidates, 1), n_columns, dtype)])
    earliest = positions[:, active].min(axis=2)
    return earliest + rng.random(earliest.shape, dtype=np.float32)


def knapsack_orders(bits: np.ndarray, n_candidates: int, rng: np.random.Generator,
                    active: np.ndarray | None = None) -> np.ndarray:
    """(n_candidates, n) row orders equal in distribution to the paper's knapsack walk.

    The walk takes features in random order and each feature's not-yet-taken carriers in random
    order, until the budget is met. A row is thus reached at the position of its earliest
    feature in the walk, in random order among the rows reached there, and rows with no feature
    come last (the paper's code stopped short of the budget instead). So an order is
    argsort(earliest feature position + uniform noise), and its first b rows are a knapsack
    mix of budget b: many candidates and every budget from one vectorised computation.
    """
    return np.argsort(knapsack_keys(bits, n_candidates, rng, active), axis=1)


def knapsack_mixes(bits: np.ndarray, n_candidates: int, budget: int, rng: np.random.Generator,
                   active: np.ndarray | None = None) -> np.ndarray:
    """(n_candidates, n) knapsack mixes at one budget: the `budget` smallest keys, in O(n)."""
    keys = knapsack_keys(bits, n_candidates, rng, active)
    mixes = np.zeros(keys.shape, dtype=bool)
    if budget > 0:
        np.put_along_axis(mixes, np.argpartition(keys, budget - 1, axis=1)[:, :budget], True, axis=1)
    return mixes


def first_in_order(orders: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """(N, n) boolean mixes: the first budgets[k] rows of orders[k]."""
    ranks = np.empty_like(orders)
    np.put_along_axis(ranks, orders, np.arange(orders.shape[1])[None, :], axis=1)
    return ranks < np.asarray(budgets)[:, None]


def count_vectors(human_masks: np.ndarray, bits: np.ndarray, block: int = 256) -> np.ndarray:
    """For every mix and feature, how many human-routed instances carry the feature.

    A matrix product for all candidates, (n_candidates, n) @ (n, n_features), in blocks of
    candidates: converting a block of masks to float32 while it is still in cache is what
    makes this fast (about 1.5x against one conversion of all the masks).
    """
    masks = np.atleast_2d(human_masks)
    bits = np.asarray(bits, dtype=np.float32)
    out = np.empty((masks.shape[0], bits.shape[1]), dtype=np.float32)
    for start in range(0, masks.shape[0], block):
        out[start:start + block] = masks[start:start + block].astype(np.float32) @ bits
    return out


# Several paid sources: a mix assigns every pair to a source by index, AI (the free default,
# 0) or paid source 1.. in order, the first being the human; its count vector is one block of
# feature counts per paid source, side by side.
AI_INDEX = 0


def source_column(source: str, feature: str, first_source: str = "human") -> str:
    """The PPM column counting `feature` among pairs routed to `source`: the first paid source's
    columns carry the plain feature names, every other source's are prefixed with its name."""
    return feature if source == first_source else f"{source}|{feature}"


def multi_source_columns(sources: list[str], feature_names: list[str]) -> list[str]:
    return [source_column(source, name, sources[0]) for source in sources for name in feature_names]


def multi_source_counts(assignments: np.ndarray, bits: np.ndarray, n_sources: int) -> np.ndarray:
    """(n_mixes, n_sources * n_features): each paid source's count vector, per 1,000 pairs."""
    weighted = per_thousand(bits)
    return np.concatenate([count_vectors(assignments == k, weighted) for k in range(1, n_sources + 1)], axis=1)


def multi_source_assignments(bits: np.ndarray, n_mixes: int, n_sources: int, rng: np.random.Generator,
                             forced: np.ndarray) -> np.ndarray:
    """(n_mixes, n) source indices: for each paid source in turn, a knapsack order and a random
    budget among the pairs still unassigned; the rest stay with the AI. Pairs in `forced` (no AI
    label) go to the first paid source."""
    n = bits.shape[0]
    assignments = np.zeros((n_mixes, n), dtype=np.int8)
    for source in range(1, n_sources + 1):
        free = assignments == AI_INDEX
        budgets = rng.integers(0, np.maximum(free.sum(axis=1), 1) + 1)
        orders = knapsack_orders(bits, n_mixes, rng)
        # the free pairs in knapsack order: taken pairs sort last
        keys = np.where(np.take_along_axis(free, orders, axis=1), 0, 1)
        ranked = np.take_along_axis(orders, np.argsort(keys, axis=1, kind="stable"), axis=1)
        chosen = first_in_order(ranked, budgets) & free
        assignments[chosen] = source
    assignments[:, forced] = 1
    return assignments


# ---------------------------------------------------------------- a million candidates
# A knapsack walk at budget b takes whole groups (the rows whose earliest feature in the walk is
# the 1st, 2nd, ... feature) and then a random subset of the boundary group, the one it is
# taking when the budget runs out. Any other subset of the same size of that group is an equally
# likely outcome of the same feature order: swapping one chosen boundary row for an unchosen
# one is another knapsack candidate, and its count vector differs from its neighbour's by two
# rows. So a few thousand walks explored by swaps give a million candidates for the price of
# O(features) each, where an independent candidate costs a pass over every row.


@dataclass
class Neighbourhoods:
    """Walks at one budget and a random sequence of boundary swaps from each: candidate (w, k)
    is walk w's mix after its first k swaps (k = 0: the walk's own mix)."""

    masks: np.ndarray  # (W, n) bool: each walk's own mix
    swapped_in: np.ndarray  # (W, steps) row taken at each swap
    swapped_out: np.ndarray  # (W, steps) row given back at each swap

    @property
    def n_candidates(self) -> int:
        return self.swapped_in.size + len(self.masks)


def _boundary(keys: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """(W, n) chosen / not chosen rows of each walk's boundary group."""
    cut = np.partition(keys, budget - 1, axis=1)[:, budget - 1:budget]
    chosen = keys <= cut
    boundary = np.floor(keys) == np.floor(cut)
    return boundary & chosen, boundary & ~chosen


def _padded_rows(flags: np.ndarray) -> np.ndarray:
    """(W, max count) indices of each row's True columns, first ones first (padding unused)."""
    return np.argsort(~flags, axis=1, kind="stable")[:, : max(1, int(flags.sum(axis=1).max()))]


def knapsack_neighbourhoods(bits: np.ndarray, n_walks: int, steps: int, budget: int,
                            rng: np.random.Generator) -> Neighbourhoods:
    """`n_walks` knapsack walks whose boundary group can swap (0 < budget < n), each followed
    by `steps` random swaps inside its boundary group."""
    if not 0 < budget < len(bits):
        raise ValueError("a neighbourhood needs a budget strictly between 0 and the row count")
    keys = knapsack_keys(bits, n_walks, rng)
    inside, outside = _boundary(keys, budget)
    movable = inside.any(axis=1) & outside.any(axis=1)  # else the walk has no neighbour
    keys, inside, outside = keys[movable], inside[movable], outside[movable]
    n_inside, n_outside = inside.sum(axis=1), outside.sum(axis=1)
    inside_rows, outside_rows = _padded_rows(inside), _padded_rows(outside)
    walks = np.arange(len(keys))
    swapped_in = np.empty((len(keys), steps), dtype=np.int64)
    swapped_out = np.empty_like(swapped_in)
    picks = rng.random((steps, 2, len(keys)))
    for step in range(steps):  # sequential in steps, vectorised over walks
        i = (picks[step, 0] * n_inside).astype(np.int64)
        j = (picks[step, 1] * n_outside).astype(np.int64)
        out, into = inside_rows[walks, i], outside_rows[walks, j]
        inside_rows[walks, i], outside_rows[walks, j] = into, out
        swapped_in[:, step], swapped_out[:, step] = into, out
    masks = np.zeros(keys.shape, dtype=bool)
    np.put_along_axis(masks, np.argpartition(keys, budget - 1, axis=1)[:, :budget], True, axis=1)
    return Neighbourhoods(masks, swapped_in, swapped_out)


def walk_sums(hoods: Neighbourhoods, rows: np.ndarray) -> np.ndarray:
    """(W, F) sums of `rows` over each walk's own mix: one matrix product for every walk (in
    blocks, a product per block costs more than the running sums it starts)."""
    return hoods.masks.astype(np.float32) @ _running_dtype(rows)


def _running_dtype(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows)
    return rows.astype(np.int32 if np.issubdtype(rows.dtype, np.integer) else np.float32)


def neighbourhood_counts(hoods: Neighbourhoods, rows: np.ndarray, walks: slice,
                         starts: np.ndarray | None = None) -> np.ndarray:
    """(walks, steps + 1, F) sums of `rows` over the candidates of `walks` (their count vectors
    when `rows` are the feature rows): each walk's own sum (`starts`, from walk_sums, else
    computed), then running sums of (row in - row out). Exact integers for integer rows;
    float32 otherwise, since moving bytes is the cost here (running sums of a thousand
    per-1,000 counts stay within 1e-4 of the float64 ones)."""
    rows = _running_dtype(rows)
    swapped_in, swapped_out = hoods.swapped_in[walks], hoods.swapped_out[walks]
    out = np.empty((len(swapped_in), swapped_in.shape[1] + 1, rows.shape[1]), dtype=rows.dtype)
    out[:, 0] = hoods.masks[walks].astype(rows.dtype) @ rows if starts is None else starts[walks]
    running = out[:, 1:]
    np.take(rows, swapped_in, axis=0, out=running, mode="clip")  # indices are valid: clip skips a copy
    running -= np.take(rows, swapped_out, axis=0, mode="clip")
    np.cumsum(running, axis=1, out=running)
    running += out[:, :1]
    return out


def neighbourhood_hashes(hoods: Neighbourhoods, row_keys: np.ndarray) -> np.ndarray:
    """(W, steps + 1) Zobrist hashes of every candidate's mask (XOR of its rows' random 64-bit
    keys), updated by each swap: equal masks hash equal, so distinct hashes count distinct
    candidates (a lower bound, exact but for 64-bit collisions)."""
    base = np.bitwise_xor.reduce(np.where(hoods.masks, row_keys, np.uint64(0)), axis=1)
    moves = np.bitwise_xor.accumulate(row_keys[hoods.swapped_in] ^ row_keys[hoods.swapped_out], axis=1)
    return np.concatenate([base[:, None], base[:, None] ^ moves], axis=1)


def neighbourhood_mask(hoods: Neighbourhoods, walk: int, step: int) -> np.ndarray:
    """Candidate (walk, step) as an explicit mask (for the chosen one, and for checks)."""
    mask = hoods.masks[walk].copy()
    for into, out in zip(hoods.swapped_in[walk, :step], hoods.swapped_out[walk, :step], strict=True):
        mask[out], mask[into] = False, True
    return mask
