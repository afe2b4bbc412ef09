"""Routing quality with the tagger's features as they are against the baseline tagger's, paired.

The same pairs, folds, labels and pair embeddings; only the features differ. Each dataset is
tagged twice from cold caches: by today's tagger (the sentence model on the runtime Settings
name, today's textual code) and by the baseline commit's (bench.tagging's "before": its textual
code, the sentence model on PyTorch). Every fold is then routed with each feature matrix by
bench.quality's own fold (PPMs, error model, every strategy x budget, the proxy RM), and the
label accuracy and proxy-RM accuracy of today's features minus the baseline's are compared pair
by pair: mean difference with a 95% interval from a bootstrap over pairs and seeds.

    python -m bench.quality_features                # out/bench/quality-features.json
    python -m bench.quality_features --datasets mt-bench --seeds 1 --mixes 50 --rm-mixes 20
    python -m bench.quality_features --runtime static   # the distilled static model's features

`--runtime` sets only today's tagger's sentence model; the pair embeddings stay those of the
runtime Settings name, so that only the features differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import get_args

import numpy as np

from bench import quality
from bench.from_git import module_at_commit
from bench.quality_data import DATASETS, FOLDS, REPO, Prepared, prepare, progress
from bench.tagging import BASELINE, TEXTUAL_PATH, Variant
from hyper.core.schema import judge_confidences
from hyper.core.settings import Settings
from hyper.core.stats import paired_difference
from hyper.method.embeddings import Runtime
from hyper_tagger import textual
from hyper_tagger.tagging import Tagger

REPORTED = ("auto", "error_model", "topk", "topk_rm_target", "uncertainty", "random")


def features(variant: Variant, data: Prepared) -> np.ndarray:
    """The dataset's binary features by this tagger, binned with the judge's confidence as the
    product bins them."""
    _, values, _ = variant.tag(data.instances)
    return Tagger.binned(values, judge_confidences(data.instances))


def compare(data: Prepared, old_bits: np.ndarray, new_bits: np.ndarray, seeds: list[int], mixes: int,
            rm_mixes: int) -> dict:
    runs = {}
    for side, bits in (("new", new_bits), ("old", old_bits)):
        sided = dataclasses.replace(data, bits=bits)
        runs[side] = []
        for fold in range(FOLDS):
            progress(f"{data.name}: {side} features, fold {fold + 1} of {FOLDS}")
            runs[side].append(quality.run_fold(sided, fold, quality.BUDGETS, seeds, mixes, rm_mixes))
    rows = []
    for budget in quality.BUDGETS:
        for strategy in REPORTED:
            row: dict = {"strategy": strategy, "budget": budget}
            for metric, name in (("label_correct", "label_accuracy"), ("rm_correct", "rm_accuracy")):
                new, old = ([np.concatenate([getattr(f, metric)[(strategy, budget)] for f in runs[side]], axis=1)]
                            for side in ("new", "old"))
                diff = paired_difference(new[0], old[0])
                row[name] = {"new": float(new[0].mean()), "old": float(old[0].mean()), "diff": diff.mean,
                             "ci": [diff.ci_low, diff.ci_high]}
            rows.append(row)
    differing = (old_bits != new_bits).any(axis=1)
    return {"n_pairs": len(old_bits), "rows_with_a_different_feature": int(differing.sum()),
            "cells_different": int((old_bits != new_bits).sum()), "results": rows}


def table(name: str, result: dict) -> str:
    lines = [f"{name}: {result['rows_with_a_different_feature']} of {result['n_pairs']} pairs have a different "
             f"feature ({result['cells_different']} cells)",
             f"  {'strategy':15s} {'budget':>6s} {'label acc new-old [95% CI]':>34s} {'RM acc new-old [95% CI]':>34s}"]
    for r in result["results"]:
        cells = [f"{r[m]['diff']:+.4f} [{r[m]['ci'][0]:+.4f}, {r[m]['ci'][1]:+.4f}]" for m in ("label_accuracy",
                                                                                              "rm_accuracy")]
        lines.append(f"  {r['strategy']:15s} {r['budget']:>6.2f} {cells[0]:>34s} {cells[1]:>34s}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mixes", type=int, default=800)
    parser.add_argument("--rm-mixes", type=int, default=200)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--runtime", choices=get_args(Runtime), default=None,
                        help="today's tagger's sentence-model runtime (default: Settings')")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "quality-features.json")
    args = parser.parse_args()
    settings = Settings()
    runtime = args.runtime or settings.embedding_runtime
    report = {"config": {**vars(args), "out": str(args.out)}, "runtime": runtime, "datasets": {}}
    with tempfile.TemporaryDirectory() as scratch:
        old = Variant(module_at_commit(args.baseline, TEXTUAL_PATH, "baseline_textual", Path(scratch)), "torch",
                      Path(scratch))
        new = Variant(textual, runtime, Path(scratch))
        for name in args.datasets:
            data = prepare(name, settings, seed=0)
            progress(f"{name}: tagging with both versions")
            result = compare(data, features(old, data), features(new, data), list(range(args.seeds)), args.mixes,
                             args.rm_mixes)
            report["datasets"][name] = result
            print(table(name, result), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
