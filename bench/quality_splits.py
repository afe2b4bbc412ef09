"""Over many random history/batch splits of a dataset (70% history with every label, 30% new
batch), through the product's own code:

- coverage: every strategy a user can pick routes the batch at 10%, 25% and 50%; the error model
  fitted on the history predicts the routed batch's label accuracy with a 90% interval (the
  router's predictor, its checks of new data included); how often the batch's measured accuracy
  on its reference labels falls inside;
- guarantee: the guaranteed mode (target accuracy 0.85, 0.90, 0.95, risk 0.10) picks the budget;
  how often the batch's measured accuracy reaches the target, and the budget spent against the
  oracle's minimum and against thresholding the judge's own confidence under the same guarantee.

Nothing is tuned on a batch: each split fits its models on its history only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.quality_data import (
    Prepared,
    fit_error_model,
    history_of,
    in_parallel,
    label_accuracy_ppm,
    route_pairs,
    subset,
)
from hyper.api.messages import STRATEGIES, RouteOptions
from hyper.core.stats import wilson
from hyper.data.label_sources import ResolvedLabels
from hyper.method.error_models import ErrorModel
from hyper.method.label_quality import guaranteed_routing
from hyper_router import label_routing
from hyper_router.label_routing import RouteModels

COVERAGE_BUDGETS = (0.1, 0.25, 0.5)
TARGETS = (0.85, 0.90, 0.95)
RISK = 0.10
NOMINAL = 0.9
BATCH_FRACTION = 0.3
USER_STRATEGIES = tuple(STRATEGIES)  # every strategy Route offers


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(10_000 + seed).permutation(n)
    n_batch = int(round(BATCH_FRACTION * n))
    return np.sort(order[n_batch:]), np.sort(order[:n_batch])


def resolved_accuracy(labels: ResolvedLabels, to_human: np.ndarray) -> float:
    return float(labels.hybrid_correct(to_human).mean())


@dataclass
class SplitModels:
    errors: ErrorModel
    ppm: object  # the label-accuracy PPM the PPM strategies follow (None: not fitted for this split)


def strategy_of(name: str, errors: ErrorModel, budget: float) -> str:
    """What Route runs for `name` (auto takes a label-quality strategy, by the history's gains)."""
    if name != "auto":
        return name
    return label_routing.plan(RouteOptions(strategy="auto"), RouteModels(errors=errors), budget).strategy


def covered(data: Prepared, batch: np.ndarray, models: SplitModels, seed: int) -> dict[tuple[str, float], bool]:
    """Per (strategy, budget): whether the router's 90% interval covered the batch's accuracy."""
    labels = subset(data.resolved, batch)
    inputs = history_of(data, batch).inputs
    gains = models.errors.calibrated.gains(inputs)
    forced = labels.forced()
    out = {}
    for budget in COVERAGE_BUDGETS:
        k = int(round(budget * len(batch)))
        evidence = label_routing.check_evidence(models.errors, inputs, RouteOptions(ai_source=data.roles.ai),
                                                1 - budget)
        for name in USER_STRATEGIES:
            chosen = route_pairs(strategy_of(name, models.errors, budget), data.bits[batch], models.ppm, gains,
                                 labels.confidence, forced, k, seed)
            predicted = label_routing.predict(models.errors, inputs, chosen, NOMINAL, evidence)
            out[(name, budget)] = predicted.low <= resolved_accuracy(labels, chosen) <= predicted.high
    return out


def oracle_budget(labels: ResolvedLabels, target: float) -> float | None:
    """The fewest pairs to humans (as a share) that reach `target` on the batch: the forced
    pairs, then the pairs the judge gets wrong and the human right; None when none does."""
    scored = labels.scored()
    correct_ai = labels.hybrid_correct(labels.forced())
    flips = scored & ~labels.correct(labels.ai) & labels.correct(labels.human) & ~labels.forced()
    needed = int(np.ceil(target * scored.sum() - correct_ai.sum()))
    if needed > flips.sum():
        return None
    return (labels.forced().sum() + max(needed, 0)) / len(scored)


def guarantees(data: Prepared, batch: np.ndarray, errors: ErrorModel) -> dict[float, dict]:
    """Per target: whether the guarantee held on the batch, its budget, the oracle's and
    uncertainty's under the same guarantee."""
    labels = subset(data.resolved, batch)
    inputs = history_of(data, batch).inputs
    forced = labels.forced()
    out = {}
    for target in TARGETS:
        routed = guaranteed_routing(errors.calibration_records, errors.calibrated.gains(inputs), forced, target, RISK,
                                    errors.scored_rate)
        baseline = guaranteed_routing(errors.calibration_records, labels.confidence, forced, target, RISK,
                                      errors.scored_rate, score="confidence")
        out[target] = {"reachable": routed.reachable, "held": resolved_accuracy(labels, routed.to_human) >= target,
                       "budget": routed.budget_fraction, "oracle": oracle_budget(labels, target),
                       "uncertainty": baseline.budget_fraction if baseline.reachable else 1.0}
    return out


@dataclass(frozen=True)
class Plan:
    n_coverage: int
    n_mixes: int


PLAN = Plan(0, 0)  # set by run() before the workers fork


def one_split(data: Prepared, seed: int) -> tuple[dict[tuple[str, float], bool], dict[float, dict]]:
    """One random split: the coverage hits (the first n_coverage splits) and the guarantees."""
    history, batch = split(len(data.folds), seed)
    errors = fit_error_model(data, history, seed)
    hits = {}
    if seed < PLAN.n_coverage:
        ppm = label_accuracy_ppm(data, history, PLAN.n_mixes, seed, kinds=("linear",))["linear"]
        hits = covered(data, batch, SplitModels(errors, ppm), seed)
    return hits, guarantees(data, batch, errors)


def run(data: Prepared, n_coverage: int, n_guarantee: int, n_mixes: int) -> dict:
    global PLAN
    PLAN = Plan(n_coverage, n_mixes)
    hits: dict[tuple[str, float], list[bool]] = {}
    outcomes: dict[float, list[dict]] = {t: [] for t in TARGETS}
    for split_hits, split_outcomes in in_parallel(one_split, range(max(n_coverage, n_guarantee)), data, "splits"):
        for key, hit in split_hits.items():
            hits.setdefault(key, []).append(hit)
        for target, outcome in split_outcomes.items():
            if len(outcomes[target]) < n_guarantee:
                outcomes[target].append(outcome)
    return {"coverage": coverage_rows(hits), "guarantee": guarantee_rows(outcomes)}


def coverage_rows(hits: dict[tuple[str, float], list[bool]]) -> list[dict]:
    rows = []
    for (strategy, budget), values in sorted(hits.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        share = wilson(int(sum(values)), len(values))
        rows.append({"strategy": strategy, "budget": budget, "nominal": NOMINAL, "covered": share.mean,
                     "covered_ci": [share.ci_low, share.ci_high], "n_splits": len(values)})
    return rows


def guarantee_rows(outcomes: dict[float, list[dict]]) -> list[dict]:
    rows = []
    for target, results in outcomes.items():
        reachable = [r for r in results if r["reachable"]]  # where a guarantee was given
        held = wilson(sum(r["held"] for r in reachable), len(reachable))
        oracle = [r["oracle"] for r in reachable if r["oracle"] is not None]
        # What the fixed-sequence test bounds by the risk: a budget named and the target missed,
        # over every split. Held over every split counts what a user got where no budget reached
        # the target (every pair to humans, with a warning).
        false_claims = wilson(sum(not r["held"] for r in reachable), len(results))
        held_all = wilson(sum(r["held"] for r in results), len(results))
        rows.append({"target": target, "risk": RISK, "n_splits": len(results), "n_reachable": len(reachable),
                     "held": held.mean, "held_ci": [held.ci_low, held.ci_high],
                     "false_claim_rate": false_claims.mean, "false_claim_ci": [false_claims.ci_low,
                                                                              false_claims.ci_high],
                     "held_all_splits": held_all.mean,
                     "budget_mean": float(np.mean([r["budget"] for r in reachable])) if reachable else None,
                     "oracle_budget_mean": float(np.mean(oracle)) if oracle else None,
                     "uncertainty_budget_mean": float(np.mean([r["uncertainty"] for r in reachable]))
                     if reachable else None})
    return rows


def print_rows(name: str, report: dict) -> None:
    print(f"\n   coverage of the predicted label accuracy's {NOMINAL:.0%} interval ({name}, random splits)")
    print(f"   {'strategy':<13s} " + "  ".join(f"{b:>16.0%}" for b in COVERAGE_BUDGETS))
    by = {(r["strategy"], r["budget"]): r for r in report["coverage"]}
    for strategy in USER_STRATEGIES:
        cells = [by[(strategy, b)] for b in COVERAGE_BUDGETS if (strategy, b) in by]
        print(f"   {strategy:<13s} " + "  ".join(f"{c['covered']:.2f} [{c['covered_ci'][0]:.2f}, "
                                                 f"{c['covered_ci'][1]:.2f}]" for c in cells))
    print(f"   guaranteed mode (risk {RISK:.0%}): target, splits where reachable, held where reachable, "
          "false claims (a budget named, the target missed), mean budget (oracle, uncertainty under the same "
          "guarantee)")
    for r in report["guarantee"]:
        budget = "" if r["budget_mean"] is None else (
            f"budget {r['budget_mean']:.2f} (oracle {r['oracle_budget_mean'] or float('nan'):.2f}, "
            f"uncertainty {r['uncertainty_budget_mean']:.2f})")
        print(f"   {r['target']:.2f}  {r['n_reachable']:>4d}/{r['n_splits']:<4d} held {r['held']:.3f} "
              f"[{r['held_ci'][0]:.3f}, {r['held_ci'][1]:.3f}]  false claims {r['false_claim_rate']:.3f} "
              f"[{r['false_claim_ci'][0]:.3f}, {r['false_claim_ci'][1]:.3f}] of all splits  {budget}")
