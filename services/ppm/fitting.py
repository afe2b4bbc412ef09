"""Fitting PPMs from (count vector, eval score) runs: linear, quadratic, LightGBM.

Linear and quadratic fits are least squares on standardised (polynomial) features with a ridge
penalty chosen by leave-one-out CV (min-norm least squares, the paper's choice when there are
more quadratic terms than runs, is its alpha -> 0 limit); the coefficients are folded back into
one quadratic form over raw counts. Held-out RMSE / Spearman come from a separate fit on a
split of the runs; a bootstrap over runs gives the ensemble behind prediction intervals.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from hyper.errors import InvalidArgument
from hyper.performance_models import KINDS, LightGBMForm, PerformanceModel, QuadraticForm

MIN_RUNS = 4
ALPHAS = np.logspace(-3, 4, 15)


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


def heldout_metrics(kind: str, counts: np.ndarray, scores: np.ndarray, holdout_fraction: float,
                    seed: int) -> dict[str, float]:
    train_x, test_x, train_y, test_y = train_test_split(
        counts, scores, test_size=holdout_fraction, random_state=seed)
    predicted = fit_form(kind, train_x, train_y, seed).predict(test_x)
    rho = spearmanr(predicted, test_y).statistic if len(test_y) > 2 else float("nan")
    return {"holdout_rmse": float(np.sqrt(np.mean((predicted - test_y) ** 2))),
            "holdout_spearman": float(rho), "n_holdout": float(len(test_y))}


def bootstrap_members(kind: str, counts: np.ndarray, scores: np.ndarray, n_members: int,
                      seed: int) -> list:
    rng = np.random.default_rng(seed)
    resamples = (rng.integers(0, len(scores), len(scores)) for _ in range(n_members))
    return [fit_form(kind, counts[rows], scores[rows], seed + k) for k, rows in enumerate(resamples)]


def fit_ppm(feature_names: list[str], counts: np.ndarray, scores: np.ndarray, kind: str = "linear",
            holdout_fraction: float = 0.0, seed: int = 0, n_bootstrap: int = 0) -> PerformanceModel:
    if kind not in KINDS:
        raise InvalidArgument("kind", f"{kind!r} is not one of {KINDS}")
    if len(scores) < MIN_RUNS:
        raise InvalidArgument("runs", f"{len(scores)} successful runs; at least {MIN_RUNS} needed")
    if not 0.0 <= holdout_fraction < 1.0:
        raise InvalidArgument("holdout_fraction", f"{holdout_fraction} is not in [0, 1)")
    if not 0 <= n_bootstrap <= 200:
        raise InvalidArgument("n_bootstrap", f"{n_bootstrap} is not in [0, 200]")
    counts, scores = np.asarray(counts, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    metrics = {"n_runs": float(len(scores))}
    if holdout_fraction > 0:
        metrics.update(heldout_metrics(kind, counts, scores, holdout_fraction, seed))
    form = fit_form(kind, counts, scores, seed)
    metrics["train_rmse"] = float(np.sqrt(np.mean((form.predict(counts) - scores) ** 2)))
    members = bootstrap_members(kind, counts, scores, n_bootstrap, seed)
    return PerformanceModel(kind, list(feature_names), form, members, metrics)
