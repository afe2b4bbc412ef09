"""Rounds benchmark: routing new data in rounds, refitting the PPM on each round's human labels,
against routing it all at once, at the same total budget (the loop of `hyper rounds`, run in
process so that many splits fit in minutes).

PandaLM (human = annotator 1, judge = gpt-3.5-turbo): per seed, a random 30% is the history
(both labels known), the other 70% arrives in K batches. What the PPMs learn from is what a team
knows: mixes scored against its own human labels. What scores the outcome is what it does not:
the new data's hybrid labels against the reference (annotators 2 + 3). Both arms of a split
score the same pairs; the difference is averaged over splits, with a 95% bootstrap over splits.

    python -m bench.rounds [--rounds 3] [--seeds 30]     # out/bench/rounds.json and a table
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from bench.quality_data import REPO, Prepared, mixes, prepare, progress, route_pairs, subset
from hyper.core.settings import Settings
from hyper.core.stats import mean_interval
from hyper.method.candidates import count_vectors, per_thousand
from hyper.method.performance_models import PerformanceModel
from hyper.method.rounds import run_rounds, split_batches
from hyper_ppm.fitting import fit_ppm

HISTORY = 0.3


def fit_on_team_labels(data: Prepared, rows: list[int], n_mixes: int, seed: int) -> PerformanceModel:
    """A label-accuracy PPM on the pairs' own human labels as the reference."""
    labels = subset(data.resolved, np.array(rows))
    labels = dataclasses.replace(labels, reference=list(labels.human))
    masks = mixes(data.bits[rows], labels.forced(), n_mixes, seed)
    counts = count_vectors(masks, per_thousand(data.bits[rows]))
    return fit_ppm([str(k) for k in range(data.bits.shape[1])], counts, labels.hybrid_correct(masks).mean(axis=1),
                   "linear", "label_accuracy", seed, pool_size=len(rows))


def route_rows(data: Prepared, model: PerformanceModel, rows: list[int], budget: int, seed: int) -> np.ndarray:
    labels = subset(data.resolved, np.array(rows))
    return route_pairs("topk", data.bits[rows], model, None, labels.confidence, labels.forced(), budget, seed)


def one_split(data: Prepared, seed: int, n_rounds: int, budget: float, n_mixes: int) -> dict[str, np.ndarray]:
    """Correctness of the new pairs' hybrid labels (scored pairs), one-shot and in rounds."""
    order = np.random.default_rng(1000 + seed).permutation(len(data.folds))
    n_history = int(HISTORY * len(order))
    history, new = order[:n_history].tolist(), order[n_history:]
    total = round(budget * len(new))

    def fit(rows: list[int]) -> PerformanceModel:
        return fit_on_team_labels(data, rows, n_mixes, seed)

    def go(model: PerformanceModel, rows: list[int], spend: int) -> np.ndarray:
        return route_rows(data, model, rows, spend, seed)

    outcome = {}
    for name, k in (("one-shot", 1), (f"{n_rounds} rounds", n_rounds)):
        batches = [new[part].tolist() for part in split_batches(len(new), k, seed)]
        result = run_rounds(history, batches, total, fit, go, collect=lambda rows: rows)
        to_human = np.zeros(len(data.folds), dtype=bool)
        for batch, mask in zip(batches, result.to_human, strict=True):
            to_human[np.array(batch)[mask]] = True
        labels = subset(data.resolved, np.sort(new))
        outcome[name] = labels.hybrid_correct(to_human[np.sort(new)])
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--mixes", type=int, default=800)
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "rounds.json"))
    args = parser.parse_args()
    data = prepare("pandalm", Settings(), seed=0)
    runs = []
    for seed in range(args.seeds):
        progress(f"split {seed + 1} of {args.seeds}")
        runs.append(one_split(data, seed, args.rounds, args.budget, args.mixes))
    names = list(runs[0])
    # Each split scores its own new pairs: means per split, intervals by a bootstrap over splits
    # (both arms of a split score the same pairs, so their difference is paired).
    accuracy = {name: np.array([run[name].mean() for run in runs]) for name in names}
    diff = mean_interval(accuracy[names[1]] - accuracy[names[0]])
    report = {"dataset": "pandalm", "history_fraction": HISTORY, "budget": args.budget, "rounds": args.rounds,
              "seeds": args.seeds, "mixes": args.mixes,
              "label_accuracy": {name: mean_interval(values).to_json() for name, values in accuracy.items()},
              "per_split": {name: values.tolist() for name, values in accuracy.items()},
              "rounds_minus_one_shot": diff.to_json()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nPandaLM, {args.budget:.0%} of the new 70% to humans, {args.seeds} random splits")
    for name, values in accuracy.items():
        e = mean_interval(values)
        print(f"  {name:<10s} label accuracy {e.mean:.4f} [{e.ci_low:.4f}, {e.ci_high:.4f}] (mean over splits)")
    print(f"  {names[1]} - one-shot: {diff.mean:+.4f} [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}] "
          "(95%, paired within splits, bootstrap over splits)")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
