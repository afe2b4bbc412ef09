"""Quality benchmark: does routing beat random on real data?

The PPM training loop on the bundled HH-RLHF harmless test split, in process. Two held-out
human-labelled splits: `dev` scores the candidate mixes the PPM learns from, `test` is touched
only by the final comparison (a PPM fitted to dev accuracy, then judged on dev, would be judged
on the data it chose for). AI labels for the pool come from the cross-fitted judge; N knapsack
candidate mixes at random budgets get a proxy RM each; linear, quadratic and LightGBM PPMs are
fitted, with held-out Spearman / RMSE next to the paper's; then at budgets 25/50/75% the mix
each strategy picks (with the PPM of best held-out Spearman) gets a proxy RM per seed, and
test accuracy is reported as mean and 95% interval over the seeds (dev accuracy beside it),
with 100% human and 100% AI as references. The interval covers training seeds only, not the
sampling of the 462 test pairs (a standard error of about 2.3 points on its own).

    python -m bench.quality                 # writes out/bench/quality.json and quality.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from hyper import dataset_files
from hyper.candidates import count_vectors, first_in_order, knapsack_orders
from hyper.config import Settings
from hyper.embeddings import SentenceEmbedder
from hyper.judge_training import cross_fitted_labels
from hyper.loop import split_pool_eval
from hyper.pairs import encode_pairs, targets_and_weights
from hyper.ppm.fitting import fit_ppm
from hyper.proxy_rm import pairwise_accuracy
from hyper.rm_trainer.job import Encoded, train_and_evaluate
from hyper.route_api import RouteOptions
from hyper.router.routing import solve
from hyper.router.selection import RoutingProblem
from hyper.run_spec import ProxySpec
from hyper.tagger.cache import DiskFeatureCache
from hyper.tagger.descriptive import ZeroShotEmbeddingTagger
from hyper.tagger.tagging import CACHED_WIDTH, Tagger
from hyper.tagger.textual import load_ner

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
PAPER_PPM = {"linear": {"spearman": 0.515, "rmse": 0.239}, "quadratic": {"spearman": 0.673, "rmse": 0.201},
             "lightgbm": {"spearman": 0.377, "rmse": 0.481}}
STRATEGIES = ("topk", "simulated", "optimize", "random", "uncertainty")
BUDGETS = (0.25, 0.5, 0.75)
_START = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


def prepare(settings: Settings, seed: int):
    """Pool and eval pairs encoded, AI labels cross-fitted, pool features tagged."""
    dataset = dataset_files.read_dataset(DATA)
    pool, held_out = split_pool_eval(dataset.instances, 0.4, seed)
    splits = {"dev": held_out[: len(held_out) // 2], "test": held_out[len(held_out) // 2:]}
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir)
    progress(f"encoding {len(pool)} pool, {len(splits['dev'])} dev and {len(splits['test'])} test pairs")
    phi_a, phi_b = encode_pairs(pool, embedder, show_progress=False)
    evaluation = {name: (encode_pairs(pairs, embedder),
                         targets_and_weights([i.labels["human"] for i in pairs])[0])
                  for name, pairs in splits.items()}
    human = [i.labels["human"] for i in pool]
    judge = cross_fitted_labels(phi_a, phi_b, human, ProxySpec(seed=seed))
    progress(f"judge agrees with humans on {judge.agreement_with_human:.1%}; tagging the pool")
    descriptive = ZeroShotEmbeddingTagger(embedder)
    tagger = Tagger(embedder, load_ner(settings.ner_model), descriptive,
                    DiskFeatureCache(settings.cache_dir / "features" / "bench", CACHED_WIDTH))
    bits = tagger.tag(pool).features.bits
    encoded = Encoded(phi_a, phi_b, targets_and_weights(human), targets_and_weights(judge.labels))
    return encoded, evaluation, bits, judge, len(pool)


def score_mixes(encoded, evaluation, masks, seed: int, chunk: int = 64) -> np.ndarray:
    """Accuracy of a proxy RM per mix on one held-out split ((pairs, targets))."""
    config = ProxySpec(seed=seed)
    pairs, targets = evaluation
    return np.concatenate([pairwise_accuracy(train_and_evaluate(encoded, pairs, masks[start:start + chunk],
                                                                config)[0], targets)
                           for start in range(0, len(masks), chunk)])


def candidate_runs(bits, encoded, dev, n_candidates: int, seed: int):
    rng = np.random.default_rng(seed)
    budgets = rng.integers(1, bits.shape[0], n_candidates)
    masks = first_in_order(knapsack_orders(bits, n_candidates, rng), budgets)
    progress(f"training {n_candidates} proxy reward models on candidate mixes (scored on dev)")
    return count_vectors(masks, bits), score_mixes(encoded, dev, masks, seed)


def fit_ppms(counts, scores, names, seed: int) -> dict:
    ppms = {}
    for kind in PAPER_PPM:
        ppm = fit_ppm(names, counts, scores, kind, holdout_fraction=0.2, seed=seed)
        ppms[kind] = ppm
        progress(f"{kind} PPM: held-out Spearman {ppm.metrics['holdout_spearman']:.3f}, "
                 f"RMSE {ppm.metrics['holdout_rmse']:.4f}")
    return ppms


def interval(values: list[float]) -> dict:
    values = np.asarray(values)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return {"mean": float(values.mean()), "ci_low": float(values.mean() - half),
            "ci_high": float(values.mean() + half), "values": values.tolist()}


def evaluate(encoded, evaluation: dict, masks_by_seed: list[np.ndarray], seeds: list[int]) -> dict:
    """Test accuracy (mean, 95% interval over seeds) and dev accuracy of one strategy's mixes."""
    pairs = list(zip(masks_by_seed, seeds, strict=True))
    test = [float(score_mixes(encoded, evaluation["test"], m[None], s)[0]) for m, s in pairs]
    dev = [float(score_mixes(encoded, evaluation["dev"], m[None], s)[0]) for m, s in pairs]
    return {**interval(test), "dev_mean": float(np.mean(dev)),
            "n_human": int(np.mean([m.sum() for m in masks_by_seed]))}


def strategy_results(bits, ppm, judge, encoded, evaluation: dict, seeds: list[int]) -> list[dict]:
    n = bits.shape[0]
    results = []
    for budget in BUDGETS:
        problem = RoutingProblem.single_source(bits, ppm, round(budget * n), confidence=judge.confidence)
        for strategy in STRATEGIES:
            masks = [solve(problem, RouteOptions(strategy=strategy, seed=seed)) for seed in seeds]
            results.append({"strategy": strategy, "budget": budget,
                            **evaluate(encoded, evaluation, masks, seeds)})
            progress(f"{strategy:>11s} at {budget:.0%}: test {results[-1]['mean']:.4f}")
    for name, mask in (("all_human", np.ones(n, bool)), ("all_ai", np.zeros(n, bool))):
        results.append({"strategy": name, "budget": 1.0 if name == "all_human" else 0.0,
                        **evaluate(encoded, evaluation, [mask] * len(seeds), seeds)})
    return results


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for strategy in STRATEGIES:
        rows = [r for r in results if r["strategy"] == strategy]
        axes.errorbar([r["budget"] * 100 for r in rows], [r["mean"] for r in rows],
                      yerr=[[r["mean"] - r["ci_low"] for r in rows], [r["ci_high"] - r["mean"] for r in rows]],
                      marker="o", capsize=3, label=strategy, linestyle="--" if strategy == "random" else "-")
    for name, style in (("all_human", ":"), ("all_ai", "-.")):
        row = next(r for r in results if r["strategy"] == name)
        axes.axhline(row["mean"], linestyle=style, color="grey", label=name.replace("_", " "))
    axes.set_xlabel("human budget (% of the pool)")
    axes.set_ylabel("proxy RM accuracy, held-out test pairs")
    axes.set_title("HH-RLHF harmless: routed vs random (mean, 95% CI over seeds)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path)


def print_table(report: dict) -> None:
    print(f"pool {report['n_pool']}, dev {report['n_dev']}, test {report['n_eval']}, "
          f"candidates {report['n_candidates']}, seeds {report['seeds']}")
    print(f"\n{'PPM':<10s} {'Spearman':>9s} {'RMSE':>8s}   paper: Spearman / RMSE")
    for kind, row in report["ppm"].items():
        paper = PAPER_PPM[kind]
        print(f"{kind:<10s} {row['spearman']:9.3f} {row['rmse']:8.4f}   {paper['spearman']:.3f} / {paper['rmse']:.3f}")
    print(f"\nrouting PPM: {report['routing_ppm']}\n{'strategy':<12s} {'budget':>6s} {'test acc':>9s}"
          f"  {'95% CI (seeds)':<18s} {'dev acc':>8s}")
    for r in report["results"]:
        print(f"{r['strategy']:<12s} {r['budget']:6.0%} {r['mean']:9.4f}  [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
              f" {r['dev_mean']:8.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "quality.json"))
    args = parser.parse_args()
    settings = Settings()
    encoded, evaluation, bits, judge, n_pool = prepare(settings, seed=0)
    counts, scores = candidate_runs(bits, encoded, evaluation["dev"], args.candidates, seed=0)
    from hyper.catalogue import FEATURE_NAMES

    ppms = fit_ppms(counts, scores, list(FEATURE_NAMES), seed=0)
    best = max(ppms, key=lambda kind: ppms[kind].metrics["holdout_spearman"])
    seeds = list(range(args.seeds))
    results = strategy_results(bits, ppms[best], judge, encoded, evaluation, seeds)
    report = {"n_pool": n_pool, "n_eval": len(evaluation["test"][1]), "n_dev": len(evaluation["dev"][1]),
              "n_candidates": args.candidates, "seeds": seeds,
              "judge_agreement": judge.agreement_with_human,
              "candidate_scores": {"min": float(scores.min()), "max": float(scores.max()),
                                   "std": float(scores.std())},
              "ppm": {kind: {"spearman": p.metrics["holdout_spearman"], "rmse": p.metrics["holdout_rmse"]}
                      for kind, p in ppms.items()},
              "paper_ppm": PAPER_PPM, "routing_ppm": best, "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    plot(results, out.with_suffix(".png"))
    print_table(report)
    print(f"\nwritten to {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
