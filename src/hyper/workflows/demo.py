"""`hyper demo`: the whole system on one machine, on data where the answer can be checked.

The dataset (real human and LLM-judge labels on the same pairs) is split the way a team meets
it: a history of pairs with both labels, to learn from, and a new batch to route. The demo
diagnoses the data, trains a PPM on the history, routes the batch under the budget, and then,
because the batch's reference labels are known here, measures what a team could not: the
label accuracy of the routed hybrid set against routing at random and by judge confidence, on
pairs the PPM never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyper.core.schema import Dataset
from hyper.core.stats import Estimate, paired_difference
from hyper.data.label_sources import LabelRoles, resolve
from hyper.workflows.training_loop import write_plain_jsonl

RANDOM_SEEDS = 20


def split_history_batch(dataset: Dataset, batch_fraction: float, seed: int, directory: Path
                        ) -> tuple[Path, Path]:
    """Writes the history and the new batch as plain JSONL (every label kept) and returns them."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    n_batch = int(round(batch_fraction * len(dataset)))
    history, batch = directory / "history.jsonl", directory / "batch.jsonl"
    write_plain_jsonl(history, [dataset.instances[k] for k in sorted(order[n_batch:])])
    write_plain_jsonl(batch, [dataset.instances[k] for k in sorted(order[:n_batch])])
    return history, batch


@dataclass
class BatchCheck:
    """Label accuracy of hybrid sets of the batch against its reference labels."""

    n_scored: int
    routed: float
    uncertainty: float | None
    random: Estimate  # mean over seeds, interval over seeds
    routed_minus_random: Estimate  # paired bootstrap over pairs and random's seeds


def check_batch(batch: Dataset, roles: LabelRoles, routed: list[str], uncertainty: list[str] | None,
                random_routes: list[list[str]]) -> BatchCheck:
    """`routed` etc. are each pair's route ("human", ..., or "ai") in the batch's order."""
    resolved = resolve(batch.instances, roles)

    def correct(routes: list[str]) -> np.ndarray:
        return resolved.hybrid_correct(np.array([route != "ai" for route in routes]))

    random = np.stack([correct(routes) for routes in random_routes])
    mine = np.broadcast_to(correct(routed), random.shape)
    per_seed = random.mean(axis=1)
    spread = 1.96 * per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    return BatchCheck(int(random.shape[1]), float(mine[0].mean()),
                      None if uncertainty is None else float(correct(uncertainty).mean()),
                      Estimate(float(per_seed.mean()), float(per_seed.mean() - spread),
                               float(per_seed.mean() + spread)),
                      paired_difference(mine, random))
