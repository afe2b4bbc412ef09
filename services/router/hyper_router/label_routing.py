"""How a Route uses an error model: which label-quality strategy routes (auto's choice, or a cold
start when there is no model yet), the skill that gates it, the label accuracy it predicts for
the pairs it actually chose, what can be checked of new data against the model's history
without paying, and the guaranteed mode."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from hyper.api.messages import PPM_STRATEGIES, RouteOptions
from hyper.core.errors import HyperError
from hyper.core.stats import Estimate
from hyper.method.error_models import AccuracyPrediction, ErrorModel, Inputs, predict_accuracy
from hyper.method.label_quality import Guarantee, best_strategy, gain_at, guaranteed_routing
from hyper.method.performance_models import PerformanceModel

EXPLORATION = 0.3  # a cold start's share of the budget on a random sample, unless the request says
ASSUMPTION = ("the error model's history and this dataset are exchangeable (drawn alike from one pool, "
              "judged by the same judge, labelled by the same kind of annotators)")
# Features whose rate differs this much between the history and the new data (in standard
# errors, after Bonferroni over the features) count as shifted.
SHIFT_LEVEL = 0.01


class SkillNotDemonstrated(HyperError):
    """A Route that asked for demonstrated skill (require_skill) and met none."""


@dataclass
class RouteModels:
    """What a Route may use: a PPM and an error model, each with its version ("" when none)."""

    ppm: PerformanceModel | None = None
    ppm_version: str = ""
    errors: ErrorModel | None = None
    errors_name: str = ""
    errors_version: str = ""


@dataclass
class Plan:
    """The strategy that routes, why, and what it gained over random on held-out history."""

    strategy: str
    reason: str
    gain: Estimate | None = None
    warnings: list[str] = field(default_factory=list)


def plan(options: RouteOptions, models: RouteModels, budget_fraction: float, confidence_known: bool = True) -> Plan:
    """The requested strategy, or auto's choice (uncertainty only where the data gives every
    pair the judge's confidence); gated by its cross-fitted gain."""
    errors = models.errors
    if options.target_accuracy is not None:
        return Plan("error_model", "the guaranteed mode routes by the error model's gains, thresholded by "
                                   "fixed-sequence testing on its history")
    if options.strategy == "auto" and errors is None:
        share = EXPLORATION if options.exploration_fraction is None else options.exploration_fraction
        return Plan("cold_start", f"no error model yet (a cold start): {share:.0%} of the budget on a random "
                                  "sample for humans (the labels a first error model learns from), the rest where "
                                  "the judge is least confident; fit one on the labelled pairs (`hyper train`)")
    if options.strategy == "auto":
        assert errors is not None
        name, gain = best_strategy(errors, budget_fraction, () if confidence_known else ("uncertainty",))
        others = ", ".join(f"{s} {_gain_text(gain_at(errors, s, budget_fraction))}" for s in errors.gains if s != name)
        return _gated(Plan(name, f"auto: {name} gained most over random at {budget_fraction:.0%} in cross-fitting "
                                 f"on the error model's history: {_gain_text(gain)} (against {others})", gain),
                      options)
    if options.strategy in errors_strategies(errors):
        assert errors is not None
        return _gated(Plan(options.strategy, "as requested", gain_at(errors, options.strategy, budget_fraction)),
                      options)
    return Plan(options.strategy, "as requested")


def errors_strategies(errors: ErrorModel | None) -> tuple[str, ...]:
    return tuple(errors.gains) if errors is not None else ()


def _gain_text(gain: Estimate | None) -> str:
    return "unmeasured" if gain is None else f"{gain.mean:+.3f} [{gain.ci_low:+.3f}, {gain.ci_high:+.3f}]"


def _gated(chosen: Plan, options: RouteOptions) -> Plan:
    if chosen.gain is None or chosen.gain.ci_low > 0:
        return chosen
    warning = (f"{chosen.strategy} has no demonstrated gain over random routing at this budget: cross-fitted on "
               f"the error model's history it gained {_gain_text(chosen.gain)} in label accuracy, an interval "
               "that includes zero; this route may be no better than routing at random.")
    if options.require_skill:
        raise SkillNotDemonstrated(warning + " (require_skill is set)")
    chosen.warnings.append(warning)
    return chosen


def unmeasured_warning(strategy: str) -> list[str]:
    """A PPM strategy's gain over random is not cross-fitted on held-out history."""
    if strategy not in PPM_STRATEGIES:
        return []
    return [f"{strategy} follows a PPM, whose gain over random routing was not measured on held-out pairs; "
            "error_model and auto are (their cross-fitted gain is reported with the route)."]


@dataclass
class Evidence:
    """What the route could check of this data against the error model's history, without paying."""

    warnings: list[str]
    extra_variance: float  # added to the prediction's variance: it is no more certain than the evidence


def check_evidence(errors: ErrorModel, inputs: Inputs, options: RouteOptions, ai_share: float) -> Evidence:
    """The judge the model learnt, and the features' rates, against the new data's."""
    judge_error = errors.calibrated.judge_error(inputs)
    history_rate = errors.metrics.get("judge_error_rate", float(judge_error.mean()))
    if options.ai_source and options.ai_source != errors.ai_source:
        return Evidence([f"the error model learnt the errors of label_{errors.ai_source}, not label_"
                         f"{options.ai_source}: nothing on this data says how often this judge is wrong, so the "
                         "predicted label accuracy is as uncertain as a judge that is right on anywhere from half "
                         "to all of the pairs it labels; label a random sample by humans and fit an error model "
                         "for this judge (`hyper train`)."], (ai_share ** 2) * 0.5 ** 2 / 12)
    shifted = shifted_features(errors, inputs)
    if not shifted:
        return Evidence([], 0.0)
    moved = float(judge_error.mean()) - history_rate
    listed = ", ".join(f"{name} {new:.0%} (history {old:.0%})" for name, new, old in shifted[:3])
    return Evidence([f"this data differs from the error model's history in {len(shifted)} feature(s) ({listed}); "
                     f"the model expects the judge to err on {judge_error.mean():.1%} of these pairs against "
                     f"{history_rate:.1%} of its history's: the prediction's interval is widened by that "
                     "difference."], (ai_share * moved) ** 2)


def shifted_features(errors: ErrorModel, inputs: Inputs) -> list[tuple[str, float, float]]:
    """(name, rate here, rate in the history) of each 0/1 feature whose rate moved beyond
    chance (a two-proportion test, Bonferroni over the features), largest move first."""
    history = np.asarray(errors.profile["means"][: len(errors.feature_names)], dtype=np.float64)
    n_history, n = errors.profile["n"][0], len(inputs.bits)
    here = inputs.bits.mean(axis=0)
    pooled = (history * n_history + here * n) / (n_history + n)
    spread = np.sqrt(np.maximum(pooled * (1 - pooled), 1e-12) * (1 / n_history + 1 / n))
    z = np.abs(here - history) / spread
    limit = norm.isf(SHIFT_LEVEL / (2 * len(history)))
    found = np.flatnonzero((z > limit) & (pooled > 0) & (pooled < 1))
    ordered = found[np.argsort(-np.abs(here - history)[found])]
    return [(errors.feature_names[j], float(here[j]), float(history[j])) for j in ordered]


def predict(errors: ErrorModel, inputs: Inputs, to_human: np.ndarray, level: float,
            evidence: Evidence) -> AccuracyPrediction:
    return predict_accuracy(errors.calibrated, inputs, to_human, level, errors.scored_rate, evidence.extra_variance)


def guaranteed(errors: ErrorModel, inputs: Inputs, forced: np.ndarray, options: RouteOptions) -> Guarantee:
    assert options.target_accuracy is not None
    return guaranteed_routing(errors.calibration_records, errors.calibrated.gains(inputs), forced,
                              options.target_accuracy, options.risk, errors.scored_rate)


def guarantee_warnings(result: Guarantee) -> list[str]:
    if result.reachable:
        return []
    return [f"no budget up to 100% reaches label accuracy {result.target:.3f} with risk {result.risk:.0%} on this "
            "error model's evidence: every pair goes to humans, and even that is not guaranteed to reach it."]
