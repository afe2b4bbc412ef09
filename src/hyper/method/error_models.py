"""Per-pair error models: the probability that the AI judge's label of a pair is wrong (and the
paid human's), calibrated on labelled history, and what follows from it for a route.

A judge's error is scored by an L2 logistic regression on the pair's features and the judge's
confidence. The score is recalibrated on cross-fitted scores (each history pair scored by one
of ten fold models that did not see it) by a small logistic model of the score and the
confidence itself, so that a predicted 30% is wrong 30% of the time on new pairs like the
history's, among pairs of any confidence: a route that selects by the judge's confidence
(uncertainty) meets probabilities calibrated where it selected. A human's error is the
history's rate, or zero where the human label is the reference itself.

For a route (which pairs go to humans), the label accuracy to expect is the mean of each pair's
probability of a correct label: in [0, 1] whatever is routed. Its interval is the central part
of a beta-binomial distribution of the correct labels among the pairs a reference will score,
whose variance adds which pairs turn out wrong (a sum of Bernoulli outcomes), how well the
recalibration is known (its parameters' covariance, by the delta method), how much the
first-stage model depends on its data (a jackknife over the fold models) and how well the
human's rate is known: no bound leaves [0, 1].

Everything is stored as JSON (coefficients, calibration, the cross-fitted records a guarantee
is computed from); fitting needs scikit-learn, applying a model only NumPy and SciPy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from hyper.core.errors import InvalidArgument
from hyper.core.stats import Estimate, auc

ARTIFACT_FORMAT = "hyper.error-model/v1"
KIND = "error_model"
FOLDS = 5  # cross-fits that measure the model (skill, strategy gains)
SCORE_FOLDS = 10  # fold models whose cross-fitted scores the recalibration is fitted on
REGULARISATION = 1.0  # the inverse L2 strength of the logistic model (sklearn's C)
MIN_CLASS = 5  # errors (and non-errors) a logistic model needs; fewer: the base rate


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class Inputs:
    """What an error model reads of a set of pairs: the tagger's features and the judge's confidence."""

    bits: np.ndarray  # (n, F) 0/1
    confidence: np.ndarray  # (n,) the judge's confidence in its label; NaN where unknown

    def confidence_columns(self, fill: float) -> np.ndarray:
        known = np.isfinite(self.confidence)
        return np.column_stack([np.where(known, self.confidence, fill), known.astype(np.float64)])

    def matrix(self, fill: float) -> np.ndarray:
        return np.column_stack([self.bits.astype(np.float64), self.confidence_columns(fill)])


def select_inputs(bits: np.ndarray, feature_names: list[str], wanted: list[str],
                  confidence: np.ndarray) -> Inputs:
    """The columns `wanted` of a tagger's feature matrix (an unknown feature is an error)."""
    index = {name: j for j, name in enumerate(feature_names)}
    missing = [name for name in wanted if name not in index]
    if missing:
        raise InvalidArgument("features", f"the error model reads features the tagger does not produce: "
                                          f"{missing[:5]}")
    return Inputs(bits[:, [index[name] for name in wanted]], np.asarray(confidence, dtype=np.float64))


@dataclass
class Logistic:
    """A linear score on the model inputs (log-odds before recalibration)."""

    coef: np.ndarray
    intercept: float

    def score(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept

    def to_json(self) -> dict:
        return {"coef": self.coef.tolist(), "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: dict) -> Logistic:
        return cls(np.asarray(data["coef"], dtype=np.float64), float(data["intercept"]))


@functools.cache
def blas_threads():
    """The BLAS libraries loaded with scikit-learn (found once: a lookup takes 10 ms)."""
    import sklearn.linear_model  # noqa: F401  (loads SciPy's BLAS before the lookup)
    from threadpoolctl import ThreadpoolController  # scikit-learn's own dependency

    return ThreadpoolController()


def fit_logistic(x: np.ndarray, errors: np.ndarray) -> Logistic:
    """The L2 logistic model of errors; the base rate's log-odds when a class is too rare."""
    from sklearn.linear_model import LogisticRegression

    n_errors = int(errors.sum())
    if n_errors < MIN_CLASS or len(errors) - n_errors < MIN_CLASS:
        rate = (n_errors + 0.5) / (len(errors) + 1.0)
        return Logistic(np.zeros(x.shape[1]), float(np.log(rate / (1 - rate))))
    # A hundred coefficients: BLAS threads cost more than they give, five times more when
    # another process holds the other core (one error model fits some 170 of these).
    with blas_threads().limit(limits=1, user_api="blas"):
        model = LogisticRegression(C=REGULARISATION, max_iter=5000).fit(x, errors)
    return Logistic(model.coef_[0].astype(np.float64), float(model.intercept_[0]))


@dataclass
class Recalibration:
    """P(error) = sigmoid(theta . [1, score, confidence, confidence known]), fitted by maximum
    likelihood on cross-fitted scores, with the covariance of theta (the inverse Fisher information)."""

    theta: np.ndarray  # (4,)
    cov: np.ndarray  # (4, 4)

    def probability(self, design: np.ndarray) -> np.ndarray:
        return _sigmoid(design @ self.theta)

    def to_json(self) -> dict:
        return {"theta": self.theta.tolist(), "cov": self.cov.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> Recalibration:
        return cls(np.asarray(data["theta"], dtype=np.float64), np.asarray(data["cov"], dtype=np.float64))


def fit_recalibration(design: np.ndarray, errors: np.ndarray) -> Recalibration:
    """Newton's method on the logistic log-likelihood; a rare class keeps the score's slope
    only (the confidence terms at zero)."""
    y = np.asarray(errors, dtype=np.float64)
    columns = np.arange(design.shape[1]) if min(y.sum(), len(y) - y.sum()) >= 2 * MIN_CLASS else np.array([0, 1])
    z = design[:, columns]
    theta = np.zeros(len(columns))
    theta[0] = np.log((y.sum() + 0.5) / (len(y) - y.sum() + 0.5))
    ridge = 1e-6 * np.eye(len(columns))
    for _ in range(100):
        p = _sigmoid(z @ theta)
        step = np.linalg.solve(z.T @ (z * (p * (1 - p))[:, None]) + ridge, z.T @ (y - p))
        theta += step
        if np.abs(step).max() < 1e-10:
            break
    p = _sigmoid(z @ theta)
    full, cov = np.zeros(design.shape[1]), np.zeros((design.shape[1], design.shape[1]))
    full[columns] = theta
    cov[np.ix_(columns, columns)] = np.linalg.inv(z.T @ (z * (p * (1 - p))[:, None]) + ridge)
    return Recalibration(full, cov)


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % folds


@dataclass
class History:
    """Labelled pairs an error model learns from: their inputs and, per pair, whether the
    judge's and the human's labels match the reference (`scored`: the pair has one; `forced`:
    it has no judge label, and goes to humans whatever is routed)."""

    inputs: Inputs
    judge_correct: np.ndarray  # bool
    human_correct: np.ndarray  # bool
    scored: np.ndarray  # bool
    forced: np.ndarray  # bool
    human_is_reference: bool  # the human label is the reference: it is never wrong


@dataclass
class Calibrated:
    """The fitted judge score, its fold models, its recalibration, and the human's error rate."""

    judge: Logistic
    folds: list[Logistic]
    recalibration: Recalibration
    confidence_fill: float
    human_errors: int
    human_pairs: int
    human_is_reference: bool

    def design(self, score: np.ndarray, inputs: Inputs) -> np.ndarray:
        return np.column_stack([np.ones(len(score)), score, inputs.confidence_columns(self.confidence_fill)])

    def judge_error(self, inputs: Inputs, model: Logistic | None = None) -> np.ndarray:
        score = (model or self.judge).score(inputs.matrix(self.confidence_fill))
        return self.recalibration.probability(self.design(score, inputs))

    @property
    def human_rate(self) -> float:
        """The human's error rate (a Beta(1/2, 1/2) posterior mean); 0 when it is the reference."""
        return 0.0 if self.human_is_reference else (self.human_errors + 0.5) / (self.human_pairs + 1.0)

    @property
    def human_rate_variance(self) -> float:
        rate = self.human_rate
        return 0.0 if self.human_is_reference else rate * (1 - rate) / (self.human_pairs + 2.0)

    def gains(self, inputs: Inputs) -> np.ndarray:
        """Per pair, the expected gain in label accuracy from a human label instead of the judge's."""
        return self.judge_error(inputs) - self.human_rate

    def to_json(self) -> dict:
        return {"judge": self.judge.to_json(), "folds": [f.to_json() for f in self.folds],
                "recalibration": self.recalibration.to_json(), "confidence_fill": self.confidence_fill,
                "human_errors": self.human_errors, "human_pairs": self.human_pairs,
                "human_is_reference": self.human_is_reference}

    @classmethod
    def from_json(cls, data: dict) -> Calibrated:
        return cls(Logistic.from_json(data["judge"]), [Logistic.from_json(f) for f in data["folds"]],
                   Recalibration.from_json(data["recalibration"]), float(data["confidence_fill"]),
                   int(data["human_errors"]), int(data["human_pairs"]), bool(data["human_is_reference"]))


def calibrate(history: History, seed: int, folds: int = SCORE_FOLDS) -> Calibrated:
    """The model fitted on every judged scored pair of the history, its fold models, and the
    recalibration fitted on their cross-fitted scores."""
    known = np.isfinite(history.inputs.confidence)
    fill = float(history.inputs.confidence[known].mean()) if known.any() else 0.5
    judged = history.scored & ~history.forced
    x = history.inputs.matrix(fill)[judged]
    errors = ~history.judge_correct[judged]
    fold = fold_of(len(errors), min(folds, len(errors)), seed)
    fold_models, oof = [], np.empty(len(errors))
    for k in np.unique(fold):
        fold_models.append(fit_logistic(x[fold != k], errors[fold != k]))
        oof[fold == k] = fold_models[-1].score(x[fold == k])
    judged_inputs = Inputs(history.inputs.bits[judged], history.inputs.confidence[judged])
    draft = Calibrated(fit_logistic(x, errors), fold_models, Recalibration(np.zeros(4), np.zeros((4, 4))), fill,
                       0, 0, True)
    recalibration = fit_recalibration(draft.design(oof, judged_inputs), errors)
    human_errors = int((~history.human_correct[history.scored]).sum())
    return Calibrated(draft.judge, fold_models, recalibration, fill, human_errors, int(history.scored.sum()),
                      history.human_is_reference)


@dataclass(frozen=True)
class AccuracyPrediction:
    """The label accuracy to expect of a route, its variance, and the interval at `level`."""

    mean: float
    variance: float
    level: float
    low: float
    high: float


def count_interval(mean: float, variance: float, m: int, level: float) -> tuple[float, float]:
    """The central `level` of the correct labels among m scored pairs, as accuracies: a
    beta-binomial with this mean and the accuracy's variance (a binomial when it is no wider)."""
    mean = float(np.clip(mean, 1e-9, 1 - 1e-9))
    tail = (1 - level) / 2
    binomial = mean * (1 - mean) / m
    if variance <= binomial or m == 1:
        low, high = stats.binom.ppf([tail, 1 - tail], m, mean)
    else:
        overdispersion = min((variance / binomial - 1) / (m - 1), 1 - 1e-9)
        strength = 1 / overdispersion - 1
        low, high = stats.betabinom.ppf([tail, 1 - tail], m, mean * strength, (1 - mean) * strength)
    return float(low / m), float(high / m)


def predict_accuracy(model: Calibrated, inputs: Inputs, to_human: np.ndarray, level: float,
                     scored_rate: float = 1.0, extra_variance: float = 0.0) -> AccuracyPrediction:
    """The label accuracy of the hybrid set when `to_human` pairs take the human's label: the
    mean probability of a correct label, and its interval among the share `scored_rate` of the
    pairs a reference will score (see the module's docstring for what the variance adds)."""
    to_human = np.asarray(to_human, dtype=bool)
    n = len(to_human)
    if n == 0:
        raise InvalidArgument("dataset", "has no instances")
    design = model.design(model.judge.score(inputs.matrix(model.confidence_fill)), inputs)
    judge_error = model.recalibration.probability(design)
    correct = np.where(to_human, 1.0 - model.human_rate, 1.0 - judge_error)
    mean = float(correct.mean())
    m = max(1, int(round(n * scored_rate)))
    outcomes = float((correct * (1 - correct)).mean()) / m
    gradient = ((~to_human) * judge_error * (1 - judge_error)) @ design / n
    recalibration = float(gradient @ model.recalibration.cov @ gradient)
    per_fold = np.array([np.where(to_human, 1.0 - model.human_rate, 1.0 - model.judge_error(inputs, fold)).mean()
                         for fold in model.folds])
    jackknife = float((len(per_fold) - 1) / len(per_fold) * ((per_fold - per_fold.mean()) ** 2).sum())
    human = model.human_rate_variance * float(to_human.mean()) ** 2
    variance = outcomes + recalibration + jackknife + human + extra_variance
    low, high = count_interval(mean, variance, m, level)
    return AccuracyPrediction(mean, variance, level, min(low, mean), max(high, mean))


def calibration_error(probability: np.ndarray, outcome: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the mean |predicted - observed| over equal-count bins,
    weighted by their size."""
    order = np.argsort(probability, kind="stable")
    groups = np.array_split(order, min(bins, len(order)))
    return float(sum(len(g) * abs(probability[g].mean() - outcome[g].mean()) for g in groups if len(g))
                 / len(order))


def _bootstrap(statistic, arrays: tuple[np.ndarray, ...], seed: int, resamples: int = 400,
               basic: bool = False) -> Estimate:
    """A percentile bootstrap interval; `basic` is for a statistic that resampling biases (a
    calibration error only grows when pairs repeat): the interval is reflected around the point
    and the point corrected alike (2 x point - the resamples' median), so that it stays inside
    its interval, all clipped at 0."""
    point = statistic(*arrays)
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    spread = [statistic(*(a[rows] for a in arrays)) for rows in rng.integers(0, n, (resamples, n))]
    low, median, high = np.nanpercentile(spread, [2.5, 50, 97.5])
    if basic:
        point, low, high = (max(0.0, 2 * point - value) for value in (median, high, low))
    return Estimate(float(point), float(low), float(high))


@dataclass
class ErrorModelSkill:
    """Cross-validated on the history: how well the judge's errors are ranked (AUC) and how
    well their probabilities are calibrated (expected calibration error), 95% intervals."""

    auc: Estimate
    calibration_error: Estimate
    n_pairs: int
    n_errors: int

    def to_json(self) -> dict:
        return {"auc": self.auc.to_json(), "calibration_error": self.calibration_error.to_json(),
                "n_pairs": self.n_pairs, "n_errors": self.n_errors}

    @classmethod
    def from_json(cls, data: dict) -> ErrorModelSkill:
        return cls(Estimate(**data["auc"]), Estimate(**data["calibration_error"]), int(data["n_pairs"]),
                   int(data["n_errors"]))


def skill(history: History, seed: int, folds: int = FOLDS) -> ErrorModelSkill:
    """Each judged scored pair's error probability from a calibrated model fitted on the other
    folds; their AUC and calibration error against the errors that happened."""
    judged = history.scored & ~history.forced
    rows = np.flatnonzero(judged)
    probability = np.empty(len(rows))
    fold = fold_of(len(rows), folds, seed)
    for k in range(folds):
        train = np.zeros(len(history.scored), dtype=bool)
        train[rows[fold != k]] = True
        model = calibrate(subset(history, train), seed)
        probability[fold == k] = model.judge_error(subset_inputs(history.inputs, rows[fold == k]))
    errors = ~history.judge_correct[rows]
    return ErrorModelSkill(_bootstrap(auc, (probability, errors), seed),
                           _bootstrap(calibration_error, (probability, errors.astype(float)), seed, basic=True),
                           len(rows), int(errors.sum()))


def subset_inputs(inputs: Inputs, rows: np.ndarray) -> Inputs:
    return Inputs(inputs.bits[rows], inputs.confidence[rows])


def subset(history: History, rows: np.ndarray) -> History:
    return History(subset_inputs(history.inputs, rows), history.judge_correct[rows], history.human_correct[rows],
                   history.scored[rows], history.forced[rows], history.human_is_reference)


@dataclass
class ErrorModel:
    """A fitted, calibrated error model as the ppm service stores it and the router applies it."""

    feature_names: list[str]
    calibrated: Calibrated
    skill: ErrorModelSkill
    scored_rate: float  # share of the history's pairs a reference scores
    ai_source: str  # the judge whose errors it models
    judges: list[str]  # the other judges its confidence came from
    gains: dict[str, dict[str, list[float]]]  # strategy -> budgets, mean, ci_low, ci_high (cross-fitted)
    calibration_records: dict[str, list[float]]  # the history's cross-fitted gains and outcomes
    profile: dict[str, list[float]]  # the history's input means: what new data is compared with
    metrics: dict[str, float] = field(default_factory=dict)
    feature_set_version: str = ""  # the tagger's, for its history's features ("": not recorded)

    @property
    def kind(self) -> str:
        return KIND

    def inputs(self, bits: np.ndarray, feature_names: list[str], confidence: np.ndarray) -> Inputs:
        return select_inputs(bits, feature_names, self.feature_names, confidence)

    def to_json(self) -> dict:
        return {"format": ARTIFACT_FORMAT, "kind": KIND, "target": "label_accuracy",
                "feature_names": self.feature_names, "calibrated": self.calibrated.to_json(),
                "error_skill": self.skill.to_json(),
                "scored_rate": self.scored_rate, "ai_source": self.ai_source, "judges": self.judges,
                "gains": self.gains, "calibration_records": self.calibration_records, "profile": self.profile,
                "metrics": self.metrics, "feature_set_version": self.feature_set_version}

    @classmethod
    def from_json(cls, data: dict) -> ErrorModel:
        if data.get("format") != ARTIFACT_FORMAT or data.get("kind") != KIND:
            raise InvalidArgument("error_model", f"not an error model this version reads ({data.get('format')})")
        return cls(list(data["feature_names"]), Calibrated.from_json(data["calibrated"]),
                   ErrorModelSkill.from_json(data["error_skill"]), float(data["scored_rate"]), data["ai_source"],
                   list(data["judges"]), data["gains"], data["calibration_records"], data["profile"],
                   data.get("metrics", {}), str(data.get("feature_set_version", "")))
