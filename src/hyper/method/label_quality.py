"""Routing for label quality with an error model: which pairs go to humans, what that gains over
random routing (cross-fitted on the history, never on the pairs routed), and the smallest budget
that reaches a target label accuracy with a stated risk.

Strategies here rank pairs; the first k of a ranking go to humans (the pairs without a judge
label always first):
- error_model: the largest expected gain, P(judge wrong) - P(human wrong);
- uncertainty: the judge's lowest confidence (no model needed);
- random: a uniformly random order (no model needed).

The guarantee follows Trust or Escalate (Jung et al., ICLR 2025): thresholds on the error
model's gain are tested in a fixed sequence, from routing everything to humans towards routing
less, each with an exact bound on the errors of the routed batch, and the last threshold that
passes is taken. The bound treats the history's cross-fitted records and the new batch as
exchangeable draws: given the history shows e errors at a threshold, the batch's error count b
is bounded where the hypergeometric probability of seeing no more than e of e + b errors in
the history falls to the risk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import hypergeom

from hyper.core.errors import InvalidArgument
from hyper.core.stats import Estimate
from hyper.method.error_models import (
    FOLDS,
    ErrorModel,
    ErrorModelSkill,
    History,
    calibrate,
    fold_of,
    skill,
    subset,
    subset_inputs,
)

LABEL_STRATEGIES = ("error_model", "uncertainty", "random")
GAIN_BUDGETS = tuple(round(float(b), 2) for b in np.arange(0.05, 1.0, 0.05))
REPEATS = 2  # cross-fits of the history behind the strategies' gains
RESAMPLES = 1000


def ranking(strategy: str, gains: np.ndarray, confidence: np.ndarray, forced: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """The order in which pairs go to humans: forced pairs first, then by the strategy."""
    if strategy == "error_model":
        key = -gains
    elif strategy == "uncertainty":
        key = np.nan_to_num(confidence, nan=-np.inf)  # no confidence known: the least confident
    elif strategy == "random":
        key = rng.random(len(forced))
    else:
        raise InvalidArgument("strategy", f"{strategy!r} is not one of {LABEL_STRATEGIES}")
    order = np.argsort(key, kind="stable")
    return np.concatenate([order[forced[order]], order[~forced[order]]])


def first(order: np.ndarray, k: int) -> np.ndarray:
    """The routing that sends the first k of `order` to humans."""
    chosen = np.zeros(len(order), dtype=bool)
    chosen[order[:k]] = True
    return chosen


def hybrid_correct(history: History, to_human: np.ndarray) -> np.ndarray:
    """Per scored pair: whether its hybrid label (the human's where routed) is right."""
    correct = np.where(to_human | history.forced, history.human_correct, history.judge_correct)
    return correct[history.scored]


def random_expectation(history: History, k: int) -> np.ndarray:
    """Per scored pair: its probability of a correct label when k pairs go to humans at random
    (forced pairs first): exact, not sampled."""
    free = ~history.forced
    share = np.clip((k - history.forced.sum()) / max(free.sum(), 1), 0.0, 1.0)
    expected = np.where(history.forced, history.human_correct,
                        share * history.human_correct + (1 - share) * history.judge_correct)
    return expected[history.scored]


@dataclass
class HeldOut:
    """A held-out part of the history: its rows and their gains from a model that did not see them."""

    rows: np.ndarray
    gains: np.ndarray


def held_out_gains(history: History, seed: int, repeats: int = REPEATS) -> list[HeldOut]:
    """For each repeat and fold, the gains of the held-out pairs by a model fitted on the rest."""
    parts = []
    for repeat in range(repeats):
        fold = fold_of(len(history.scored), FOLDS, seed + repeat)
        for k in range(FOLDS):
            model = calibrate(subset(history, fold != k), seed)
            rows = np.flatnonzero(fold == k)
            parts.append(HeldOut(rows, model.gains(subset_inputs(history.inputs, rows))))
    return parts


def cross_fitted_gains(history: History, parts: list[HeldOut], seed: int,
                       budgets: tuple[float, ...] = GAIN_BUDGETS) -> dict[str, dict[str, list[float]]]:
    """Per strategy and budget: the label accuracy it gained over random routing on held-out
    pairs (every repeat's folds pooled), with a 95% bootstrap interval over the pairs."""
    table: dict[str, dict[str, list[float]]] = {}
    for number, strategy in enumerate(("error_model", "uncertainty")):
        rows = {"budgets": list(budgets), "mean": [], "ci_low": [], "ci_high": []}
        for budget in budgets:
            # One generator per strategy and budget: a budget's interval is the same whichever others are asked.
            rng = np.random.default_rng([seed, number, int(round(budget * 1000))])
            differences = []
            for part in parts:
                held = subset(history, part.rows)
                k = int(round(budget * len(part.rows)))
                order = ranking(strategy, part.gains, held.inputs.confidence, held.forced, rng)
                differences.append(hybrid_correct(held, first(order, k)) - random_expectation(held, k))
            estimate = _mean_interval(np.concatenate(differences), rng)
            for key, value in zip(("mean", "ci_low", "ci_high"), (estimate.mean, estimate.ci_low, estimate.ci_high),
                                  strict=True):
                rows[key].append(value)
        table[strategy] = rows
    return table


def _mean_interval(values: np.ndarray, rng: np.random.Generator) -> Estimate:
    if not len(values):
        return Estimate(0.0, 0.0, 0.0)
    means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Estimate(float(values.mean()), float(low), float(high))


def gain_at(model: ErrorModel, strategy: str, budget_fraction: float) -> Estimate | None:
    """The strategy's cross-fitted gain over random at this budget (linear between the table's
    budgets); None for a strategy the history did not measure."""
    table = model.gains.get(strategy)
    if table is None:
        return None
    at = [float(np.interp(budget_fraction, table["budgets"], table[key], left=0.0, right=0.0))
          for key in ("mean", "ci_low", "ci_high")]
    return Estimate(*at)


def best_strategy(model: ErrorModel, budget_fraction: float, excluded: tuple[str, ...] = ()) -> tuple[str, Estimate]:
    """What `auto` takes: the strategy with the larger cross-fitted gain at this budget."""
    measured = {s: estimate for s in model.gains
                if s not in excluded and (estimate := gain_at(model, s, budget_fraction)) is not None}
    name = max(measured, key=lambda s: measured[s].mean)
    return name, measured[name]


def calibration_records(history: History, parts: list[HeldOut]) -> dict[str, list[float]]:
    """What a guarantee is computed from: each scored pair's cross-fitted gain (the first
    repeat's) and whether its judge and human labels are right."""
    gains = np.full(len(history.scored), np.nan)
    for part in parts[:FOLDS]:
        gains[part.rows] = part.gains
    keep = history.scored
    return {"gain": np.where(history.forced, np.inf, gains)[keep].tolist(),
            "confidence": history.inputs.confidence[keep].tolist(),
            "forced": history.forced[keep].astype(float).tolist(),
            "judge_correct": history.judge_correct[keep].astype(float).tolist(),
            "human_correct": history.human_correct[keep].astype(float).tolist()}


def fit(history: History, feature_names: list[str], ai_source: str, judges: list[str], seed: int = 0
        ) -> ErrorModel:
    """The error model of a labelled history, with everything the router reads from it."""
    judged = history.scored & ~history.forced
    if judged.sum() < 2 * FOLDS:
        raise InvalidArgument("history", f"{int(judged.sum())} pairs have a judge label and a reference; "
                                         f"at least {2 * FOLDS} are needed")
    calibrated = calibrate(history, seed)
    parts = held_out_gains(history, seed)
    skill_: ErrorModelSkill = skill(history, seed)
    profile = {"means": history.inputs.matrix(calibrated.confidence_fill).mean(axis=0).tolist(),
               "n": [float(len(history.scored))]}
    metrics = {"judge_error_rate": float(1 - history.judge_correct[judged].mean()),
               "human_error_rate": float(1 - history.human_correct[history.scored].mean()),
               "n_pairs": float(len(history.scored)), "n_scored": float(history.scored.sum())}
    return ErrorModel(feature_names, calibrated, skill_, float(history.scored.mean()), ai_source, list(judges),
                      cross_fitted_gains(history, parts, seed), calibration_records(history, parts), profile,
                      metrics)


@dataclass(frozen=True)
class Guarantee:
    """The smallest budget whose routing reaches `target` with probability 1 - risk."""

    target: float
    risk: float
    reachable: bool
    budget_fraction: float  # of the batch's pairs to humans (1.0 when not reachable)
    to_human: np.ndarray  # the batch's pairs it sends to humans
    bound: float  # the batch's label accuracy it guarantees (at the chosen threshold)


def error_bound(errors: int, n_history: int, n_batch: int, risk: float) -> int:
    """The most errors among n_batch exchangeable pairs that the history's `errors` among
    n_history leave plausible at level `risk` (hypergeometric, exact)."""
    plausible = hypergeom.cdf(errors, n_history + n_batch, errors + np.arange(n_batch + 1), n_history) > risk
    return int(np.argmin(plausible)) - 1 if not plausible.all() else n_batch


def guaranteed_routing(records: dict[str, list[float]], batch_values: np.ndarray, batch_forced: np.ndarray,
                       target: float, risk: float, scored_rate: float, score: str = "gain") -> Guarantee:
    """Fixed-sequence testing of thresholds on a score, from routing every pair to humans
    towards routing fewer; the last threshold whose bound meets the target is taken. The score
    is the error model's gain (`batch_values` the batch's gains), or, as a baseline,
    score="confidence": the judge's lack of confidence (`batch_values` the batch's confidences),
    ties broken at random alike in the history and the batch so that they stay exchangeable."""
    history_score = _score(records, score)
    batch_scores = batch_values
    if score == "confidence":
        rng = np.random.default_rng(0)
        history_score = history_score + rng.random(len(history_score)) * 1e-6
        batch_scores = -np.nan_to_num(batch_values, nan=-np.inf) + rng.random(len(batch_values)) * 1e-6
    judge_ok = np.asarray(records["judge_correct"], dtype=bool)
    human_ok = np.asarray(records["human_correct"], dtype=bool)
    batch_score = np.where(batch_forced, np.inf, batch_scores)
    n_history, n_batch = len(judge_ok), max(1, int(round(len(batch_score) * scored_rate)))
    pooled = np.concatenate([history_score[np.isfinite(history_score)], batch_score[np.isfinite(batch_score)]])
    thresholds = np.unique(np.quantile(pooled, np.linspace(0, 1, 101))) if len(pooled) else np.array([0.0])
    chosen: Guarantee | None = None
    for threshold in np.concatenate([[-np.inf], thresholds]):  # strict (everything to humans) to lax
        errors = int((~np.where(history_score >= threshold, human_ok, judge_ok)).sum())
        bound = 1 - error_bound(errors, n_history, n_batch, risk) / n_batch
        if bound < target:
            break
        to_human = batch_score >= threshold
        chosen = Guarantee(target, risk, True, float(to_human.mean()), to_human, bound)
    if chosen is None:
        return Guarantee(target, risk, False, 1.0, np.ones(len(batch_score), dtype=bool), float("nan"))
    return chosen


def _score(records: dict[str, list[float]], score: str) -> np.ndarray:
    forced = np.asarray(records["forced"], dtype=bool)
    if score == "gain":
        values = np.asarray(records["gain"], dtype=np.float64)
    else:  # the judge's lack of confidence; unknown counts as none
        values = -np.nan_to_num(np.asarray(records["confidence"], dtype=np.float64), nan=-np.inf)
    return np.where(forced, np.inf, values)
