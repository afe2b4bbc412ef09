"""Quality benchmark: does routing beat random, and uncertainty, on real human + AI labels?

Three datasets: PandaLM (human = annotator1, AI = gpt-3.5-turbo, reference = the strict
majority of annotators 2 and 3), MT-Bench via LLMBar (human = the expert label, AI = gpt-4,
reference = the expert label) and HH-RLHF harmless (human labels; AI labels from a judge
trained on human labels, cross-fitted over the folds).

K-fold cross-fitting: the pairs are split into K folds; for each fold j, every model the
routing uses (the PPMs, the error model) is fitted on the K-2 folds that are neither j nor its
evaluation fold e = j+1; fold j is routed at each budget, and
- label accuracy: the hybrid labels of fold j against the reference (every pair scored once);
- RM accuracy: a proxy reward model trained on fold j's hybrid labels, scored on fold e's
  reference labels (pairs neither the router's models nor the RM saw).
Each strategy is compared with random routing of the same fold at the same budget with the same
seeds: the paired difference, with a 95% interval from a bootstrap over pairs and seeds.

Strategies, each through the router's own code: the PPM's (topk, simulated, optimize) with a PPM
fitted on the label accuracy of candidate mixes (the kind of best cross-validated skill on the
training folds), topk with the paper's target (a PPM fitted on proxy-RM accuracy of candidate
mixes), uncertainty (the judge's confidence from the data), error_model (the calibrated error
model `hyper train` fits, fitted on the training folds), auto (what Route's auto takes: the
label-quality strategy that gained most in cross-fitting on the training folds), random, oracle
(routes exactly the scored pairs the judge gets wrong and the human right: the ceiling),
all-human and all-AI.

Then, over many random history/batch splits (bench/quality_splits.py): the coverage of the
predicted label accuracy's interval for every strategy, and the guaranteed mode's validity and
budget; and on MT-Bench, judges in cascade (bench/quality_cascade.py).

    python -m bench.quality                         # out/bench/quality.json, one PNG per dataset
    python -m bench.quality --datasets pandalm --seeds 3 --splits 20 --guarantee-splits 40
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import quality_cascade, quality_splits
from bench.quality_data import (
    DATASETS,
    FOLDS,
    PROXY,
    REPO,
    Prepared,
    fit_error_model,
    history_of,
    label_accuracy_ppm,
    mixes,
    oracle_pairs,
    prepare,
    progress,
    route_pairs,
    subset,
)
from hyper.core.settings import Settings
from hyper.core.stats import mean_interval, paired_difference
from hyper.method import label_quality
from hyper.method.candidates import count_vectors, per_thousand
from hyper.method.performance_models import PerformanceModel
from hyper.method.proxy_rm import predict_margins, train_heads
from hyper.method.reward_pairs import targets_and_weights
from hyper_ppm.fitting import fit_ppm

BUDGETS = (0.1, 0.25, 0.5)
PPM_STRATEGIES = ("topk", "simulated", "optimize")
STRATEGIES = (*PPM_STRATEGIES, "topk_rm_target", "uncertainty", "error_model", "auto", "random", "oracle")


def proxy_rm_correct(data: Prepared, train: np.ndarray, label_sets: list[list[str | None]], evaluate: np.ndarray,
                     seed: int) -> np.ndarray:
    """(n_label_sets, n_decided_eval) correctness of proxy RMs trained on the label sets."""
    targets, weights = zip(*[targets_and_weights([label or "tie" for label in labels]) for labels in label_sets],
                           strict=True)
    config = PROXY.model_copy(update={"seed": seed})
    params, _ = train_heads(data.phi[0][train], data.phi[1][train], np.stack(targets), np.stack(weights), config)
    margins = predict_margins(params, data.phi[0][evaluate], data.phi[1][evaluate], config)
    eval_targets, _ = targets_and_weights([label or "tie" for label in (data.resolved.reference[k] for k in evaluate)])
    decided = eval_targets != 0
    return np.sign(margins[:, decided]) == eval_targets[decided]


def rm_target_ppm(data: Prepared, rows: np.ndarray, n_mixes: int, seed: int) -> PerformanceModel:
    """The paper's target: proxy-RM accuracy of candidate mixes on a held-out part of the
    training pairs (a third), with a linear PPM."""
    dev = rows[np.arange(len(rows)) % 3 == 0]
    pool = rows[np.arange(len(rows)) % 3 != 0]
    labels = subset(data.resolved, pool)
    masks = mixes(data.bits[pool], labels.forced(), n_mixes, seed)
    correct = proxy_rm_correct(data, pool, [labels.hybrid_labels(m) for m in masks], dev, seed)
    counts = count_vectors(masks, per_thousand(data.bits[pool]))
    return fit_ppm([str(k) for k in range(data.bits.shape[1])], counts, correct.mean(axis=1), "linear",
                   "rm_accuracy", seed)


@dataclass
class FoldResult:
    label_correct: dict[tuple[str, float], np.ndarray]  # (strategy, budget) -> (seeds, scored pairs)
    rm_correct: dict[tuple[str, float], np.ndarray]  # -> (seeds, decided eval pairs)
    skills: dict[str, dict]


def run_fold(data: Prepared, fold: int, budgets: tuple[float, ...], seeds: list[int], n_mixes: int,
             n_rm_mixes: int) -> FoldResult:
    test = np.flatnonzero(data.folds == fold)
    evaluate = np.flatnonzero(data.folds == (fold + 1) % FOLDS)
    train = np.flatnonzero((data.folds != fold) & (data.folds != (fold + 1) % FOLDS))
    ppms = label_accuracy_ppm(data, train, n_mixes, seed=fold)
    best = max(ppms, key=lambda kind: ppms[kind].skill.spearman)  # chosen on training folds only
    paper_ppm = rm_target_ppm(data, train, n_rm_mixes, seed=fold)
    errors = fit_error_model(data, train, seed=fold)
    labels = subset(data.resolved, test)
    forced = labels.forced()
    gains = errors.calibrated.gains(history_of(data, test).inputs)
    label_correct, rm_correct, label_sets = {}, {}, []
    for budget in budgets:
        k = round(budget * len(test))
        for strategy in STRATEGIES:
            model = paper_ppm if strategy == "topk_rm_target" else ppms[best]
            name = {"topk_rm_target": "topk", "auto": label_quality.best_strategy(errors, budget)[0]}.get(strategy,
                                                                                                       strategy)
            chosen = [oracle_pairs(labels, k) if strategy == "oracle" else
                      route_pairs(name, data.bits[test], model, gains, labels.confidence, forced, k, s) for s in seeds]
            label_correct[(strategy, budget)] = np.stack([labels.hybrid_correct(c) for c in chosen])
            label_sets.append(((strategy, budget), [labels.hybrid_labels(c) for c in chosen]))
    for key, mask in ((("all_human", 1.0), np.ones(len(test), bool)), (("all_ai", 0.0), forced)):
        label_correct[key] = np.stack([labels.hybrid_correct(mask)] * len(seeds))
        label_sets.append((key, [labels.hybrid_labels(mask)] * len(seeds)))
    for s, seed in enumerate(seeds):  # one vmapped program per seed: every strategy and budget
        correct = proxy_rm_correct(data, test, [sets[s] for _, sets in label_sets], evaluate, seed)
        for (key, _), row in zip(label_sets, correct, strict=True):
            rm_correct.setdefault(key, []).append(row)
    skills = {kind: ppm.skill.to_json() for kind, ppm in ppms.items()} | {"rm_target_linear": paper_ppm.skill.to_json()}
    return FoldResult(label_correct, {k: np.stack(v) for k, v in rm_correct.items()}, skills | {"chosen": best})


def summarise(folds: list[FoldResult], budgets: tuple[float, ...]) -> list[dict]:
    def pooled(key, metric):  # pairs of every fold side by side, seeds as rows
        return np.concatenate([getattr(f, metric)[key] for f in folds], axis=1)

    results = []
    keys = [(s, b) for b in budgets for s in STRATEGIES] + [("all_human", 1.0), ("all_ai", 0.0)]
    for strategy, budget in keys:
        row = {"strategy": strategy, "budget": budget}
        for metric, name in (("label_correct", "label_accuracy"), ("rm_correct", "rm_accuracy")):
            values = pooled((strategy, budget), metric)
            entry = {"mean": float(values.mean()), "mean_ci": mean_interval(values).to_json()}
            if (strategy, budget) in folds[0].label_correct and ("random", budget) in folds[0].label_correct:
                diff = paired_difference(values, pooled(("random", budget), metric))
                entry |= {"diff_vs_random": diff.mean, "ci_low": diff.ci_low, "ci_high": diff.ci_high}
                if strategy != "uncertainty":
                    versus = paired_difference(values, pooled(("uncertainty", budget), metric))
                    entry |= {"diff_vs_uncertainty": versus.mean, "vs_uncertainty_ci": [versus.ci_low, versus.ci_high]}
            else:
                entry |= {"diff_vs_random": None, "ci_low": None, "ci_high": None}
            row[name] = entry
        results.append(row)
    return results


def ppm_summary(folds: list[FoldResult]) -> dict:
    """Per PPM kind: the cross-validated Spearman over runs, and its interval, each the mean over
    the folds (every fold fits its own PPMs)."""
    kinds = [k for k in folds[0].skills if k != "chosen"]
    return {kind: {"spearman": float(np.mean([f.skills[kind]["spearman"] for f in folds])),
                   "spearman_ci": [float(np.mean([f.skills[kind]["ci_low"] for f in folds])),
                                   float(np.mean([f.skills[kind]["ci_high"] for f in folds]))],
                   "per_fold": [f.skills[kind]["spearman"] for f in folds]} for kind in kinds}


def benchmark(data: Prepared, seeds: list[int], n_mixes: int, n_rm_mixes: int) -> dict:
    folds = []
    for fold in range(FOLDS):
        progress(f"{data.name}: fold {fold + 1} of {FOLDS}")
        folds.append(run_fold(data, fold, BUDGETS, seeds, n_mixes, n_rm_mixes))
    roles = data.roles
    return {"n_pairs": len(data.folds), "n_scored": int(data.resolved.scored().sum()),
            "n_forced_human": int(data.resolved.forced().sum()), "human_source": roles.human,
            "ai_source": roles.ai if data.resolved.ai_in_data else "cross-fitted judge",
            "reference": " + ".join(data.resolved.reference_sources), "judges": list(roles.judges),
            "ppm": ppm_summary(folds), "ppm_kind_routed_per_fold": [f.skills["chosen"] for f in folds],
            "results": summarise(folds, BUDGETS)}


# The strategy whose claim is tested, named before any result: Route's auto (what the demo
# routes with). Picking the best row after the fact would make its interval optimistic.
CLAIMED = ("auto",)


def verdict(report: dict, strategy: str, budget: float = 0.25) -> str:
    """The claim the issue aims at, for one strategy, stated only as far as the intervals go."""
    rows = {r["strategy"]: r for r in report["results"] if r["budget"] == budget}
    best = strategy
    label, rm = rows[best]["label_accuracy"], rows[best]["rm_accuracy"]
    beats_random = label["ci_low"] > 0
    beats_uncertainty = label["vs_uncertainty_ci"][0] > 0
    no_rm_loss = rm["vs_uncertainty_ci"][1] >= 0
    parts = [f"{best} at {budget:.0%}",
             f"label accuracy {label['diff_vs_random']:+.3f} vs random [{label['ci_low']:+.3f}, "
             f"{label['ci_high']:+.3f}]" + ("" if beats_random else " (not shown)"),
             f"{label['diff_vs_uncertainty']:+.3f} vs uncertainty [{label['vs_uncertainty_ci'][0]:+.3f}, "
             f"{label['vs_uncertainty_ci'][1]:+.3f}]" + ("" if beats_uncertainty else " (not shown)"),
             f"RM accuracy {rm['diff_vs_uncertainty']:+.3f} vs uncertainty [{rm['vs_uncertainty_ci'][0]:+.3f}, "
             f"{rm['vs_uncertainty_ci'][1]:+.3f}]" + ("" if no_rm_loss else " (loses)")]
    return "; ".join(parts)


def print_table(name: str, report: dict) -> None:
    print(f"\n== {name}: {report['n_pairs']} pairs ({report['n_scored']} scored), human {report['human_source']}, "
          f"AI {report['ai_source']}, reference {report['reference']}")
    for kind, row in report["ppm"].items():
        print(f"   PPM {kind:<17s} CV Spearman {row['spearman']:+.2f} [{row['spearman_ci'][0]:+.2f}, "
              f"{row['spearman_ci'][1]:+.2f}] (mean over folds)")
    print(f"   {'strategy':<15s} {'budget':>6s} {'label acc':>9s} {'vs random [95% CI]':>27s} "
          f"{'RM acc':>7s} {'vs random [95% CI]':>27s}")
    for r in report["results"]:
        cells = []
        for metric in ("label_accuracy", "rm_accuracy"):
            m = r[metric]
            diff = (f"{m['diff_vs_random']:+.4f} [{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]"
                    if m["diff_vs_random"] is not None else "")
            cells.append(f"{m['mean']:9.4f} {diff:>27s}")
        print(f"   {r['strategy']:<15s} {r['budget']:6.0%} {cells[0]} {cells[1]}")
    for line in report["verdict"]:
        print(f"   claim: {line}")


def plot(name: str, report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    shown = ("optimize", "topk", "topk_rm_target", "error_model", "uncertainty", "random", "oracle")
    for ax, metric, title in zip(axes, ("label_accuracy", "rm_accuracy"),
                                 ("label accuracy of the hybrid set", "proxy-RM accuracy on held-out pairs"),
                                 strict=True):
        for strategy in shown:
            rows = [r for r in report["results"] if r["strategy"] == strategy]
            x = [r["budget"] * 100 for r in rows]
            y = np.array([r[metric]["mean"] for r in rows])
            low = np.array([r[metric]["mean_ci"]["ci_low"] for r in rows])
            high = np.array([r[metric]["mean_ci"]["ci_high"] for r in rows])
            ax.plot(x, y, marker="o", label=strategy, linestyle="--" if strategy == "random" else "-")
            ax.fill_between(x, low, high, alpha=0.12)
        for name_ref, style in (("all_human", ":"), ("all_ai", "-.")):
            ref = next(r for r in report["results"] if r["strategy"] == name_ref)
            ax.axhline(ref[metric]["mean"], linestyle=style, color="grey", label=name_ref.replace("_", " "))
        ax.set_xlabel("human budget (% of the routed fold)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    figure.suptitle(f"{name}: mean over {FOLDS} cross-fitted folds and seeds, 95% intervals shaded")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--mixes", type=int, default=800,
                        help="candidate mixes per label-accuracy PPM fit (cheap: no training)")
    parser.add_argument("--rm-mixes", type=int, default=200,
                        help="candidate mixes per proxy-RM-target PPM fit (the paper trained ~200)")
    parser.add_argument("--splits", type=int, default=100, help="random history/batch splits for coverage")
    parser.add_argument("--guarantee-splits", type=int, default=200, help="random splits for the guaranteed mode")
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "quality.json"))
    args = parser.parse_args()
    settings = Settings()
    seeds = list(range(args.seeds))
    report = {"folds": FOLDS, "seeds": seeds, "budgets": list(BUDGETS), "mixes": args.mixes,
              "rm_mixes": args.rm_mixes, "splits": args.splits, "guarantee_splits": args.guarantee_splits,
              "datasets": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        data = prepare(name, settings, seed=0)
        result = benchmark(data, seeds, args.mixes, args.rm_mixes)
        result["verdict"] = [verdict(result, strategy) for strategy in CLAIMED]
        result |= quality_splits.run(data, args.splits, args.guarantee_splits, args.mixes)
        if name == "mt-bench":
            result["cascade"] = quality_cascade.run(data, args.splits)
        report["datasets"][name] = result
        plot(name, result, out.with_name(f"quality-{name}.png"))
        print_table(name, result)
        quality_splits.print_rows(name, result)
        if "cascade" in result:
            quality_cascade.print_rows(result["cascade"])
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwritten to {out} and {out.parent}/quality-<dataset>.png")


if __name__ == "__main__":
    main()
