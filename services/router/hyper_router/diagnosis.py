"""Can routing pay on this data? A diagnosis before any budget is spent.

From a dataset with human, AI and reference labels and the tagger's features: how often each
source agrees with the reference, where the judge errs (error rate per feature bin), whether
its errors can be predicted (a cross-validated AUC from the features, from the judge's
confidence, and from both), and the label accuracy to expect at each budget when routing at
random, by judge confidence (uncertainty), by the calibrated error model (cross-fitted, the
same code and folds `hyper train` measures an error model with, so a diagnosis of a history
and the error model fitted on it say the same), and by an oracle that routes exactly the
pairs the judge gets wrong and the human right (the ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from hyper.api.messages import AccuracyCurve, ErrorAuc, EstimateBody, FeatureErrors, SourceAgreement
from hyper.api.messages import Diagnosis as DiagnosisMessage
from hyper.core.catalogue import CATALOGUE
from hyper.core.errors import HyperError, InvalidArgument
from hyper.core.features import FeatureMatrix
from hyper.core.schema import Dataset
from hyper.core.stats import Estimate, auc_interval, wilson
from hyper.data.label_sources import LabelRoles, ResolvedLabels, resolve
from hyper.method import label_quality
from hyper.method.error_models import History, Inputs

MIN_SUPPORT = 20  # scored pairs a feature bin needs before its error rate is reported
BUDGETS = np.round(np.linspace(0.0, 1.0, 21), 2)
FOLDS = 5
MEANINGFUL_GAIN = 0.01  # a point of label accuracy at 25% budget: below it, "pays little"
VERDICT_BUDGET = 0.25


@dataclass
class Diagnosis:
    n_pairs: int
    n_scored: int
    n_forced_human: int
    notes: list[str]
    agreement: dict[str, Estimate]  # label source -> agreement with the reference
    judge_error_rate: Estimate
    feature_errors: list[tuple[str, int, Estimate]]  # worst first
    error_auc: dict[str, Estimate]  # "features", "confidence", "both"
    expected_accuracy: dict[str, list[float]]  # strategy -> label accuracy at each of BUDGETS
    gains: dict[str, Estimate]  # strategy -> cross-fitted gain over random at VERDICT_BUDGET
    budgets: list[float] = field(default_factory=lambda: BUDGETS.tolist())

    def verdict(self) -> str:
        """The same test Route's skill gate makes: a cross-fitted gain over random whose
        interval excludes zero."""
        name, best = max(self.gains.items(), key=lambda item: item[1].mean)
        gain = f"{best.mean:+.3f} [{best.ci_low:+.3f}, {best.ci_high:+.3f}]"
        others = ", ".join(f"{s} {g.mean:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}]" for s, g in self.gains.items()
                           if s != name)
        if best.ci_low <= 0:
            return (f"routing is not shown to pay here: at {VERDICT_BUDGET:.0%} budget the best strategy, {name}, "
                    f"gains {gain} in label accuracy over random (cross-fitted), an interval including zero")
        opening = "routing can pay" if best.mean >= MEANINGFUL_GAIN else "routing pays little here"
        return (f"{opening}: at {VERDICT_BUDGET:.0%} budget {name} gains {gain} in label accuracy over random "
                f"(cross-fitted; {others})")


def confidence_inputs(confidence: np.ndarray) -> np.ndarray:
    """The judge's confidence as model inputs: the value (unknown -> the mean) and whether known."""
    known = np.isfinite(confidence)
    filled = np.where(known, confidence, np.nanmean(confidence) if known.any() else 0.5)
    return np.column_stack([filled, known.astype(float)])


def error_inputs(features: FeatureMatrix, confidence: np.ndarray) -> dict[str, np.ndarray]:
    """What an error model may read: the text's features (the judge-confidence bins aside), the
    judge's confidence itself, and both."""
    judge = {f.name for f in CATALOGUE if f.group == "judge"}
    columns = [j for j, name in enumerate(features.feature_names) if name not in judge]
    inputs = {"features": features.bits[:, columns].astype(float), "confidence": confidence_inputs(confidence)}
    inputs["both"] = np.hstack([inputs["features"], inputs["confidence"]])
    return inputs


def error_model(train_inputs: np.ndarray, train_errors: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """Probability of a judge error for `inputs`, from a logistic model of the training pairs'
    errors (L2, C=1); the base rate when one class has too few pairs to fit."""
    if train_errors.sum() < FOLDS or (~train_errors).sum() < FOLDS:
        return np.full(len(inputs), train_errors.mean())
    model = LogisticRegression(C=1.0, max_iter=2000).fit(train_inputs, train_errors)
    return model.predict_proba(inputs)[:, 1]


def cross_fitted_error_probability(inputs: np.ndarray, errors: np.ndarray, seed: int) -> np.ndarray:
    """Each pair's probability of a judge error from a model fitted on the other folds."""
    probability = np.full(len(errors), errors.mean())
    if errors.sum() < FOLDS or (~errors).sum() < FOLDS:
        return probability
    for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(inputs, errors):
        probability[test] = error_model(inputs[train], errors[train], inputs[test])
    return probability


def accuracy_by_budget(resolved: ResolvedLabels, order: np.ndarray) -> list[float]:
    """Label accuracy of the hybrid set over the scored pairs when the first k of `order` (the
    pairs without an AI label always first) go to humans, at each budget fraction."""
    forced = resolved.forced()
    order = np.concatenate([np.flatnonzero(forced), order[~forced[order]]])
    accuracies = []
    for fraction in BUDGETS:
        to_human = np.zeros(len(order), dtype=bool)
        to_human[order[: max(int(round(fraction * len(order))), int(forced.sum()))]] = True
        accuracies.append(float(resolved.hybrid_correct(to_human).mean()))
    return accuracies


def random_accuracy(resolved: ResolvedLabels) -> list[float]:
    """The expected label accuracy of routing at random (exact, not sampled)."""
    scored, forced = resolved.scored(), resolved.forced()
    human = resolved.correct(resolved.human)
    ai = resolved.correct(resolved.ai)
    n, n_forced = len(scored), int(forced.sum())
    free = scored & ~forced
    accuracies = []
    for fraction in BUDGETS:
        share = min(1.0, max(0.0, (round(fraction * n) - n_forced) / max(n - n_forced, 1)))
        correct = human[scored & forced].sum() + share * human[free].sum() + (1 - share) * ai[free].sum()
        accuracies.append(float(correct / scored.sum()))
    return accuracies


def require_judge_labels(resolved: ResolvedLabels, roles: LabelRoles) -> None:
    if roles.ai == roles.human:
        raise InvalidArgument("ai_source", f"is the human source {roles.human!r}: diagnose compares an AI "
                                           "judge's labels with the humans'")
    if not resolved.ai_in_data:
        raise InvalidArgument("ai_source", f"no row has label_{roles.ai}: label the pairs with a judge "
                                           "first (hyper annotate), then diagnose")


def diagnose(dataset: Dataset, features: FeatureMatrix, roles: LabelRoles, seed: int = 0) -> Diagnosis:
    resolved = resolve(dataset.instances, roles)
    given = [i.judge_confidence for i in dataset.instances]  # a dataset's own column comes first
    resolved.confidence = np.array([c if g is None else g for g, c in zip(given, resolved.confidence, strict=True)],
                                   dtype=np.float64)
    require_judge_labels(resolved, roles)
    scored = resolved.scored() & ~resolved.forced()
    errors = ~resolved.correct(resolved.ai)
    if len(set(errors[scored].tolist())) < 2:
        raise HyperError(f"the judge {roles.ai!r} is {'wrong' if errors[scored].all() else 'right'} on every "
                         f"one of the {int(scored.sum())} pairs with a reference label: there is nothing for "
                         "routing to find (is the reference the judge itself?)")
    inputs = error_inputs(features, resolved.confidence)
    probability = {name: cross_fitted_error_probability(x[scored], errors[scored], seed)
                   for name, x in inputs.items()}
    history = History(Inputs(features.bits, resolved.confidence), resolved.correct(resolved.ai),
                      resolved.correct(resolved.human), resolved.scored(), resolved.forced(),
                      resolved.reference_sources == (roles.human,))
    parts = label_quality.held_out_gains(history, seed)
    held_out = np.zeros(len(dataset))
    for part in parts[:label_quality.FOLDS]:  # the first repeat: every pair held out once
        held_out[part.rows] = part.gains
    gains = label_quality.cross_fitted_gains(history, parts, seed, (VERDICT_BUDGET,))
    curves = {"random": random_accuracy(resolved),
              "uncertainty": accuracy_by_budget(resolved, np.argsort(np.nan_to_num(resolved.confidence, nan=1.0),
                                                                     kind="stable")),
              "error_model": accuracy_by_budget(resolved, np.argsort(-held_out, kind="stable")),
              "oracle": accuracy_by_budget(resolved, resolved.oracle_order())}
    return Diagnosis(
        len(dataset), int(resolved.scored().sum()), int(resolved.forced().sum()), resolved.notes,
        agreement_by_source(dataset, resolved, roles), wilson(int(errors[scored].sum()), int(scored.sum())),
        feature_errors(features, errors, scored),
        {name: auc_interval(p, errors[scored], seed) for name, p in probability.items()}, curves,
        {name: Estimate(table["mean"][0], table["ci_low"][0], table["ci_high"][0]) for name, table in gains.items()})


def agreement_by_source(dataset: Dataset, resolved: ResolvedLabels, roles: LabelRoles) -> dict[str, Estimate]:
    sources = [roles.human, roles.ai, *roles.judges]
    out = {}
    for source in dict.fromkeys(sources):
        labels = [i.labels.get(source) for i in dataset.instances]
        labelled = resolved.scored() & np.array([label is not None for label in labels])
        out[source] = wilson(int(resolved.correct(labels)[labelled].sum()), int(labelled.sum()))
    return out


def feature_errors(features: FeatureMatrix, errors: np.ndarray, scored: np.ndarray
                   ) -> list[tuple[str, int, Estimate]]:
    """The judge's error rate among the scored pairs carrying each feature (with enough of
    them), worst first by the interval's lower bound: a high rate on few pairs is no finding."""
    rows = []
    for j, name in enumerate(features.feature_names):
        carriers = scored & (features.bits[:, j] == 1)
        if carriers.sum() >= MIN_SUPPORT:
            rows.append((name, int(carriers.sum()), wilson(int(errors[carriers].sum()), int(carriers.sum()))))
    return sorted(rows, key=lambda row: -row[2].ci_low)


def _estimate(value: Estimate) -> EstimateBody:
    return EstimateBody(**value.to_json())


def diagnosis_message(diagnosis: Diagnosis) -> DiagnosisMessage:
    """The diagnosis as the API answers it (the ten worst feature bins)."""
    return DiagnosisMessage(
        n_pairs=diagnosis.n_pairs, n_scored=diagnosis.n_scored, n_forced_human=diagnosis.n_forced_human,
        notes=diagnosis.notes, judge_error_rate=_estimate(diagnosis.judge_error_rate),
        agreement=[SourceAgreement(source=s, agreement=_estimate(e)) for s, e in diagnosis.agreement.items()],
        worst_features=[FeatureErrors(feature=name, n=n, error_rate=_estimate(e))
                        for name, n, e in diagnosis.feature_errors[:10]],
        error_auc=[ErrorAuc(inputs=name, auc=_estimate(e)) for name, e in diagnosis.error_auc.items()],
        budgets=diagnosis.budgets, verdict=diagnosis.verdict(),
        expected_accuracy=[AccuracyCurve(strategy=name, label_accuracy=curve)
                           for name, curve in diagnosis.expected_accuracy.items()])
