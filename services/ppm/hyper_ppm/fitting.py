"""Fitting PPMs from (count vector, eval score) runs: linear, quadratic, LightGBM.

Linear and quadratic fits are least squares on standardised (polynomial) features with a ridge
penalty chosen by leave-one-out CV (min-norm least squares, the paper's choice when there are
more quadratic terms than runs, is its alpha -> 0 limit); the coefficients are folded back into
one quadratic form over raw counts.

K-fold cross-validation over the runs gives every run a prediction from a fit that did not see
it. From those: the PPM's skill (Spearman with a bootstrap interval over runs; the paper
reports Spearman on 16 held-out runs) and the absolute errors behind its split-conformal
prediction intervals. The model itself is then fitted on every run.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from hyper.core.errors import InvalidArgument
from hyper.method.performance_models import KINDS, TARGETS, LightGBMForm, PerformanceModel, QuadraticForm, Skill

MIN_RUNS = 4
ALPHAS = np.logspace(-3, 4, 15)
DEFAULT_CV_FOLDS = 5
SKILL_RESAMPLES = 2000


def _ridge_on_standardised(design: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge on standardised columns, returned as (coefficients, intercept) on raw columns."""
    scaler = StandardScaler().fit(design)
    ridge = RidgeCV(alphas=ALPHAS).fit(scaler.transform(design), scores)
    coef = ridge.coef_ / scaler.scale_
    return coef, float(ridge.intercept_ - coef @ scaler.mean_)


def fit_linear(counts: np.ndarray, scores: np.ndarray) -> QuadraticForm:
    coef, intercept = _ridge_on_standardised(counts, scores)
    return QuadraticForm(intercept, coef)


def fit_quadratic(counts: np.ndarray, scores: np.ndarray) -> QuadraticForm:
    poly = PolynomialFeatures(degree=2, include_bias=False).fit(counts)
    coef, intercept = _ridge_on_standardised(poly.transform(counts), scores)
    n_features = counts.shape[1]
    linear, quadratic = np.zeros(n_features), np.zeros((n_features, n_features))
    for beta, powers in zip(coef, poly.powers_, strict=True):
        active = np.flatnonzero(powers)
        if powers.sum() == 1:
            linear[active[0]] += beta
        elif len(active) == 1:  # c_i^2
            quadratic[active[0], active[0]] += beta
        else:  # c_i c_j, split over both halves of the symmetric Q
            quadratic[active[0], active[1]] += beta / 2
            quadratic[active[1], active[0]] += beta / 2
    return QuadraticForm(intercept, linear, quadratic)


def fit_lightgbm(counts: np.ndarray, scores: np.ndarray, seed: int = 0) -> LightGBMForm:
    import lightgbm

    regressor = lightgbm.LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=15,
                                       min_child_samples=min(5, max(1, len(scores) // 4)),
                                       subsample=0.8, subsample_freq=1, random_state=seed,
                                       verbose=-1)
    regressor.fit(counts, scores)
    return LightGBMForm(regressor.booster_.model_to_string())


def fit_form(kind: str, counts: np.ndarray, scores: np.ndarray, seed: int = 0):
    if kind == "linear":
        return fit_linear(counts, scores)
    if kind == "quadratic":
        return fit_quadratic(counts, scores)
    return fit_lightgbm(counts, scores, seed)


def cross_validated_predictions(kind: str, counts: np.ndarray, scores: np.ndarray, folds: int,
                                seed: int) -> np.ndarray:
    """Each run's prediction by a PPM fitted on the other folds."""
    predicted = np.empty(len(scores))
    splits = KFold(n_splits=min(folds, len(scores)), shuffle=True, random_state=seed).split(counts)
    for train, test in splits:
        predicted[test] = fit_form(kind, counts[train], scores[train], seed).predict(counts[test])
    return predicted


def _spearman_rows(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (rows of resampled runs); NaN where constant."""
    a, b = rankdata(predicted, axis=1), rankdata(measured, axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def skill(predicted: np.ndarray, measured: np.ndarray, seed: int,
          resamples: int = SKILL_RESAMPLES) -> Skill:
    """Spearman of cross-validated predictions with the measured scores, and its 95% percentile
    bootstrap interval over runs (a constant resample, which has no correlation, counts as 0)."""
    point = float(_spearman_rows(predicted[None], measured[None])[0])
    rows = np.random.default_rng(seed).integers(0, len(measured), (resamples, len(measured)))
    spread = np.nan_to_num(_spearman_rows(predicted[rows], measured[rows]), nan=0.0)
    low, high = np.percentile(spread, [2.5, 97.5])
    return Skill(0.0 if np.isnan(point) else point, float(low), float(high), len(measured))


def fit_ppm(feature_names: list[str], counts: np.ndarray, scores: np.ndarray, kind: str = "linear",
            target: str = "rm_accuracy", seed: int = 0, cv_folds: int = DEFAULT_CV_FOLDS,
            pool_size: int = 0, feature_set_version: str = "") -> PerformanceModel:
    if kind not in KINDS:
        raise InvalidArgument("kind", f"{kind!r} is not one of {KINDS}")
    if target not in TARGETS:
        raise InvalidArgument("target", f"{target!r} is not one of {TARGETS}")
    if len(scores) < MIN_RUNS:
        raise InvalidArgument("runs", f"{len(scores)} successful runs; at least {MIN_RUNS} needed")
    if not 2 <= cv_folds <= 20:
        raise InvalidArgument("cv_folds", f"{cv_folds} is not in [2, 20]")
    counts, scores = np.asarray(counts, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    predicted = cross_validated_predictions(kind, counts, scores, cv_folds, seed)
    form = fit_form(kind, counts, scores, seed)
    metrics = {"n_runs": float(len(scores)), "cv_folds": float(min(cv_folds, len(scores))),
               "cv_rmse": float(np.sqrt(np.mean((predicted - scores) ** 2))),
               "train_rmse": float(np.sqrt(np.mean((form.predict(counts) - scores) ** 2)))}
    return PerformanceModel(kind, list(feature_names), form, skill(predicted, scores, seed),
                            np.abs(predicted - scores), target, pool_size, metrics,
                            feature_set_version=feature_set_version)
