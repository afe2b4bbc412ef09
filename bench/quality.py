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

Strategies: the PPM's (topk, simulated, optimize) with a PPM fitted on the label accuracy of
candidate mixes (the kind of best cross-validated skill on the training folds), topk with the
paper's target (a PPM fitted on proxy-RM accuracy of candidate mixes), uncertainty (the judge's
confidence from the data), error_model (a logistic model of the judge's errors on features and
confidence), random, oracle (routes exactly the pairs whose AI label is wrong: the ceiling),
all-human and all-AI.

    python -m bench.quality                         # out/bench/quality.json, one PNG per dataset
    python -m bench.quality --datasets pandalm --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyper.api.messages import RouteOptions
from hyper.core.schema import Instance
from hyper.core.settings import Settings
from hyper.core.stats import mean_interval, paired_difference
from hyper.data.dataset_files import read_dataset
from hyper.data.label_sources import LabelRoles, ResolvedLabels, resolve
from hyper.judges.training import cross_fitted_labels
from hyper.method.candidates import count_vectors, first_in_order, knapsack_orders, per_thousand
from hyper.method.embeddings import SentenceEmbedder
from hyper.method.performance_models import KINDS, PerformanceModel
from hyper.method.proxy_rm import predict_margins, train_heads
from hyper.method.reward_pairs import encode_pairs, targets_and_weights
from hyper.method.run_spec import ProxySpec
from hyper_ppm.fitting import fit_ppm
from hyper_router.diagnosis import error_inputs, error_model
from hyper_router.problem import ForcedSplit
from hyper_router.route_plan import solve
from hyper_router.selection import RoutingProblem
from hyper_tagger.cache import DiskFeatureCache
from hyper_tagger.descriptive import ZeroShotEmbeddingTagger
from hyper_tagger.tagging import CACHED_WIDTH, Tagger
from hyper_tagger.textual import load_ner

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
DATASETS = {
    "pandalm": (DATA / "pandalm-testset.jsonl.gz", LabelRoles("annotator1", "gpt-3.5-turbo", (), ("pandalm-7b",))),
    "mt-bench": (DATA / "llmbar-mtbench.jsonl.gz", LabelRoles("human", "gpt-4", (), ("chatgpt", "llama-2", "palm-2"))),
    "hh-rlhf": (DATA / "hh-rlhf-harmless-base-test.jsonl.gz", LabelRoles("human", "ai")),
}
BUDGETS = (0.1, 0.25, 0.5, 0.75)
PPM_STRATEGIES = ("topk", "simulated", "optimize")
STRATEGIES = (*PPM_STRATEGIES, "topk_rm_target", "uncertainty", "error_model", "random", "oracle")
FOLDS = 5
PROXY = ProxySpec()
_START = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Prepared:
    """One dataset, ready to route: labels in their roles, features, pair embeddings."""

    name: str
    roles: LabelRoles
    resolved: ResolvedLabels
    bits: np.ndarray
    inputs: np.ndarray  # error-model inputs: features and confidence
    phi: tuple[np.ndarray, np.ndarray]
    folds: np.ndarray  # fold of each pair


def with_cross_fitted_ai(instances: list[Instance], phi, folds: np.ndarray) -> list[Instance]:
    """AI labels for a dataset without any: each fold labelled by a judge trained on the others."""
    labels = [i.labels["human"] for i in instances]
    out = list(instances)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        judge = cross_fitted_labels(phi[0], phi[1], [lab if t else "tie" for lab, t in zip(labels, train, strict=True)],
                                    PROXY, n_folds=2)
        for k in np.flatnonzero(test):
            out[k] = dataclasses.replace(out[k], labels=dict(out[k].labels, ai=judge.labels[k]),
                                         judge_confidence=float(judge.confidence[k]))
    return out


def prepare(name: str, settings: Settings, seed: int) -> Prepared:
    path, roles = DATASETS[name]
    instances = read_dataset(path).instances
    folds = np.random.default_rng(seed).permutation(len(instances)) % FOLDS
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir)
    progress(f"{name}: encoding {len(instances)} pairs")
    phi = encode_pairs(instances, embedder)
    if roles.ai not in {s for i in instances for s in i.labels}:
        instances = with_cross_fitted_ai(instances, phi, folds)
    resolved = resolve(instances, roles)
    confidence = np.where(np.isfinite(resolved.confidence), resolved.confidence,
                          [np.nan if i.judge_confidence is None else i.judge_confidence for i in instances])
    resolved.confidence = confidence
    instances = [dataclasses.replace(i, judge_confidence=None if np.isnan(c) else float(c))
                 for i, c in zip(instances, confidence, strict=True)]
    progress(f"{name}: tagging")
    tagger = Tagger(embedder, load_ner(settings.ner_model), ZeroShotEmbeddingTagger(embedder),
                    DiskFeatureCache(settings.cache_dir / "features" / "bench", CACHED_WIDTH))
    features = tagger.tag(instances).features
    return Prepared(name, roles, resolved, features.bits, error_inputs(features, confidence)["both"], phi, folds)


def subset(resolved: ResolvedLabels, rows: np.ndarray) -> ResolvedLabels:
    return dataclasses.replace(resolved, human=[resolved.human[k] for k in rows], ai=[resolved.ai[k] for k in rows],
                               reference=[resolved.reference[k] for k in rows],
                               confidence=resolved.confidence[rows])


def mixes(bits: np.ndarray, forced: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Knapsack candidate mixes at random budgets, the pairs without an AI label always human."""
    rng = np.random.default_rng(seed)
    return first_in_order(knapsack_orders(bits, n, rng), rng.integers(1, len(bits), n)) | forced


def label_accuracy_ppm(data: Prepared, rows: np.ndarray, n_mixes: int, seed: int) -> dict[str, PerformanceModel]:
    """PPMs of every kind, fitted on the label accuracy of candidate mixes of the training pairs."""
    labels = subset(data.resolved, rows)
    masks = mixes(data.bits[rows], labels.forced(), n_mixes, seed)
    scores = labels.hybrid_correct(masks).mean(axis=1)
    counts = count_vectors(masks, per_thousand(data.bits[rows]))
    names = [str(k) for k in range(data.bits.shape[1])]
    return {kind: fit_ppm(names, counts, scores, kind, "label_accuracy", seed, pool_size=len(rows))
            for kind in KINDS}


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


def route(strategy: str, problem: RoutingProblem, forced: np.ndarray, seed: int, priority: np.ndarray) -> np.ndarray:
    """Which pairs of the fold go to humans. The PPM strategies and random run the router's own
    code; the others take the first pairs of their priority order (forced pairs always first)."""
    if strategy in (*PPM_STRATEGIES, "random", "topk_rm_target"):
        split = ForcedSplit(problem, forced)
        name = "topk" if strategy == "topk_rm_target" else strategy
        return split.whole(solve(split.at_budget(problem.budget), RouteOptions(strategy=name, seed=seed)))
    order = np.concatenate([np.flatnonzero(forced), priority[~forced[priority]]])
    chosen = np.zeros(len(forced), dtype=bool)
    chosen[order[: max(int(problem.budget), int(forced.sum()))]] = True
    return chosen


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
    errors = ~data.resolved.correct(data.resolved.ai)
    trained = train[data.resolved.scored()[train] & ~data.resolved.forced()[train]]
    error_probability = error_model(data.inputs[trained], errors[trained], data.inputs[test])
    labels = subset(data.resolved, test)
    forced = labels.forced()
    priority = {"uncertainty": np.argsort(np.nan_to_num(labels.confidence, nan=1.0), kind="stable"),
                "error_model": np.argsort(-error_probability, kind="stable"),
                "oracle": np.argsort(labels.correct(labels.ai), kind="stable")}
    label_correct, rm_correct, label_sets = {}, {}, []
    for budget in budgets:
        for strategy in STRATEGIES:
            model = paper_ppm if strategy == "topk_rm_target" else ppms[best]
            problem = RoutingProblem.single_source(data.bits[test], model, round(budget * len(test)))
            chosen = [route(strategy, problem, forced, s, priority.get(strategy, np.arange(len(test)))) for s in seeds]
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


def benchmark(name: str, settings: Settings, seeds: list[int], n_mixes: int, n_rm_mixes: int) -> dict:
    data = prepare(name, settings, seed=0)
    folds = []
    for fold in range(FOLDS):
        progress(f"{name}: fold {fold + 1} of {FOLDS}")
        folds.append(run_fold(data, fold, BUDGETS, seeds, n_mixes, n_rm_mixes))
    roles = data.roles
    return {"n_pairs": len(data.folds), "n_scored": int(data.resolved.scored().sum()),
            "n_forced_human": int(data.resolved.forced().sum()), "human_source": roles.human,
            "ai_source": roles.ai if data.resolved.ai_in_data else "cross-fitted judge",
            "reference": " + ".join(data.resolved.reference_sources), "judges": list(roles.judges),
            "ppm": ppm_summary(folds), "ppm_kind_routed_per_fold": [f.skills["chosen"] for f in folds],
            "results": summarise(folds, BUDGETS)}


# The strategies whose claim is tested, named before any result: Route's best (optimize, on the
# label-accuracy PPM) and the diagnosis's error model. Picking the best row after the fact would
# make its interval optimistic.
CLAIMED = ("optimize", "error_model")


def verdict(report: dict, strategy: str, budget: float = 0.25) -> str:
    """The claim the issue aims at, for one strategy, stated only as far as the intervals go."""
    rows = {r["strategy"]: r for r in report["results"] if r["budget"] == budget}
    best = strategy
    label, rm = rows[best]["label_accuracy"], rows[best]["rm_accuracy"]
    beats_random = label["ci_low"] > 0
    beats_uncertainty = label["vs_uncertainty_ci"][0] > 0
    no_rm_loss = rm["ci_high"] >= 0
    parts = [f"{best} at {budget:.0%}",
             f"label accuracy {label['diff_vs_random']:+.3f} vs random [{label['ci_low']:+.3f}, "
             f"{label['ci_high']:+.3f}]" + ("" if beats_random else " (not shown)"),
             f"{label['diff_vs_uncertainty']:+.3f} vs uncertainty [{label['vs_uncertainty_ci'][0]:+.3f}, "
             f"{label['vs_uncertainty_ci'][1]:+.3f}]" + ("" if beats_uncertainty else " (not shown)"),
             f"RM accuracy {rm['diff_vs_random']:+.3f} vs random [{rm['ci_low']:+.3f}, {rm['ci_high']:+.3f}]"
             + ("" if no_rm_loss else " (loses)")]
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
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "quality.json"))
    args = parser.parse_args()
    settings = Settings()
    seeds = list(range(args.seeds))
    report = {"folds": FOLDS, "seeds": seeds, "budgets": list(BUDGETS), "mixes": args.mixes,
              "rm_mixes": args.rm_mixes, "datasets": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        result = benchmark(name, settings, seeds, args.mixes, args.rm_mixes)
        result["verdict"] = [verdict(result, strategy) for strategy in CLAIMED]
        report["datasets"][name] = result
        plot(name, result, out.with_name(f"quality-{name}.png"))
        print_table(name, result)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwritten to {out} and {out.parent}/quality-<dataset>.png")


if __name__ == "__main__":
    main()
