"""Transfer benchmark: a PPM fitted on one dataset routes another (the paper fits on MultiPref
and routes HelpSteer2, AlpacaFarm and ChatArena). Count vectors are per 1,000 pairs, so a PPM
applies to a dataset of any size; what transfers is its ranking of which pairs gain most from
human labels.

For every (source, target) pair of the bundled datasets: a label-accuracy PPM (linear, 800
knapsack mixes) fitted on all of the source routes all of the target at each budget; it is
scored as in the quality benchmark, by the label accuracy of the target's hybrid labels against
its reference, as a paired difference from random routing of the same pairs (5 seeds; 95%
bootstrap over pairs and seeds), beside the in-domain PPM (5-fold cross-fitted on the target
itself) and uncertainty routing.

    python -m bench.transfer          # out/bench/transfer.json and a table
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.quality_data import (
    DATASETS,
    FOLDS,
    REPO,
    Prepared,
    label_accuracy_ppm,
    prepare,
    progress,
    route_pairs,
    subset,
)
from hyper.core.settings import Settings
from hyper.core.stats import paired_difference
from hyper.method.performance_models import PerformanceModel

BUDGETS = (0.25, 0.5)
STRATEGY = "topk"  # with a linear PPM, topk and optimize pick the same pairs


def routed_correct(data: Prepared, rows: np.ndarray, model: PerformanceModel | None, budget: float,
                   strategy: str, seeds: list[int]) -> np.ndarray:
    """(seeds, scored pairs of `rows`): whether each hybrid label matches the reference."""
    labels = subset(data.resolved, rows)
    k = round(budget * len(rows))
    return np.stack([labels.hybrid_correct(route_pairs(strategy, data.bits[rows], model, None, labels.confidence,
                                                       labels.forced(), k, seed)) for seed in seeds])


def in_domain(data: Prepared, budget: float, seeds: list[int], n_mixes: int) -> np.ndarray:
    """Each fold routed by a PPM fitted on the other folds of the same dataset."""
    parts = []
    for fold in range(FOLDS):
        test, train = np.flatnonzero(data.folds == fold), np.flatnonzero(data.folds != fold)
        model = label_accuracy_ppm(data, train, n_mixes, seed=fold)["linear"]
        parts.append(routed_correct(data, test, model, budget, STRATEGY, seeds))
    return np.concatenate(parts, axis=1)


def compare(values: np.ndarray, random: np.ndarray) -> dict:
    diff = paired_difference(values, random)
    return {"label_accuracy": float(values.mean()), "diff_vs_random": diff.mean, "ci_low": diff.ci_low,
            "ci_high": diff.ci_high}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--mixes", type=int, default=800)
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "transfer.json"))
    args = parser.parse_args()
    settings, seeds = Settings(), list(range(args.seeds))
    data = {name: prepare(name, settings, seed=0) for name in args.datasets}
    fitted = {}
    for name, prepared in data.items():
        progress(f"{name}: fitting the PPM on all of it")
        fitted[name] = label_accuracy_ppm(prepared, np.arange(len(prepared.folds)), args.mixes, seed=0)["linear"]
    results = []
    for target, prepared in data.items():
        every = np.arange(len(prepared.folds))
        for budget in BUDGETS:
            progress(f"{target}: routing at {budget:.0%}")
            random = routed_correct(prepared, every, fitted[target], budget, "random", seeds)
            rows = {"in-domain (cross-fitted)": in_domain(prepared, budget, seeds, args.mixes),
                    "uncertainty": routed_correct(prepared, every, fitted[target], budget, "uncertainty", seeds)}
            rows |= {f"from {source}": routed_correct(prepared, every, fitted[source], budget, STRATEGY, seeds)
                     for source in data if source != target}
            for name, values in rows.items():
                results.append({"target": target, "budget": budget, "ppm": name} | compare(values, random))
            results.append({"target": target, "budget": budget, "ppm": "random",
                            "label_accuracy": float(random.mean())})
    skills = {name: model.skill.to_json() for name, model in fitted.items()}
    report = {"seeds": seeds, "mixes": args.mixes, "strategy": STRATEGY, "source_ppm_skill": skills,
              "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\n{'target':<9s} {'budget':>6s} {'PPM':<26s} {'label acc':>9s} {'vs random [95% CI]':>28s}")
    for r in results:
        diff = (f"{r['diff_vs_random']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
                if "diff_vs_random" in r else "")
        print(f"{r['target']:<9s} {r['budget']:6.0%} {r['ppm']:<26s} {r['label_accuracy']:9.4f} {diff:>28s}")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
