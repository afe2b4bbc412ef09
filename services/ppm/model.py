"""The performance prediction model: eval score regressed on a mix's count vector.

v0 is linear (ridge on standardised counts, folded back to raw-count coefficients so the
artifact is a plain weight vector). Artifacts are JSON, never pickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hyper.errors import InvalidArgument

ARTIFACT_FORMAT = "hyper.ppm/v1"
KINDS = ("linear",)
MIN_RUNS = 4


@dataclass
class LinearPPM:
    feature_names: list[str]
    coef: np.ndarray
    intercept: float
    kind: str = "linear"
    metrics: dict[str, float] = field(default_factory=dict)

    def predict(self, count_vectors: np.ndarray) -> np.ndarray:
        return np.atleast_2d(count_vectors) @ self.coef + self.intercept

    def gains(self, binary_rows: np.ndarray) -> np.ndarray:
        """gain_i = PPM(instance i's binary vector) - PPM(zero vector)."""
        rows = np.atleast_2d(binary_rows).astype(np.float64)
        return self.predict(rows) - self.predict(np.zeros((1, rows.shape[1])))[0]

    def to_json(self) -> dict:
        return {"format": ARTIFACT_FORMAT, "kind": self.kind, "feature_names": self.feature_names,
                "coef": self.coef.tolist(), "intercept": self.intercept, "metrics": self.metrics}

    @classmethod
    def from_json(cls, data: dict) -> "LinearPPM":
        if data.get("format") != ARTIFACT_FORMAT or data.get("kind") not in KINDS:
            raise InvalidArgument("artifact", f"not a {ARTIFACT_FORMAT} linear model")
        return cls(list(data["feature_names"]), np.asarray(data["coef"], dtype=np.float64),
                   float(data["intercept"]), data["kind"], dict(data.get("metrics", {})))


def _fit_linear(counts: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, float]:
    pipeline = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    pipeline.fit(counts, scores)
    scaler, ridge = pipeline[0], pipeline[1]
    coef = ridge.coef_ / scaler.scale_
    return coef, float(ridge.intercept_ - np.dot(coef, scaler.mean_))


def heldout_metrics(counts: np.ndarray, scores: np.ndarray, holdout_fraction: float,
                    seed: int) -> dict[str, float]:
    """RMSE and Spearman of a model fitted without a held-out share of the runs."""
    train_x, test_x, train_y, test_y = train_test_split(
        counts, scores, test_size=holdout_fraction, random_state=seed)
    coef, intercept = _fit_linear(train_x, train_y)
    predicted = test_x @ coef + intercept
    rho = spearmanr(predicted, test_y).statistic if len(test_y) > 1 else float("nan")
    return {"holdout_rmse": float(np.sqrt(np.mean((predicted - test_y) ** 2))),
            "holdout_spearman": float(rho), "n_holdout": float(len(test_y))}


def fit_ppm(feature_names: list[str], counts: np.ndarray, scores: np.ndarray, kind: str = "linear",
            holdout_fraction: float = 0.0, seed: int = 0) -> LinearPPM:
    """Fits on all runs; held-out metrics come from a separate fit on a split of them."""
    if kind not in KINDS:
        raise InvalidArgument("kind", f"{kind!r} is not one of {KINDS}")
    if len(scores) < MIN_RUNS:
        raise InvalidArgument("runs", f"{len(scores)} successful runs; at least {MIN_RUNS} needed")
    if not 0.0 <= holdout_fraction < 1.0:
        raise InvalidArgument("holdout_fraction", f"{holdout_fraction} is not in [0, 1)")
    metrics = {"n_runs": float(len(scores))}
    if holdout_fraction > 0:
        metrics.update(heldout_metrics(counts, scores, holdout_fraction, seed))
    coef, intercept = _fit_linear(counts, scores)
    residuals = counts @ coef + intercept - scores
    metrics["train_rmse"] = float(np.sqrt(np.mean(residuals ** 2)))
    return LinearPPM(list(feature_names), coef, intercept, kind, metrics)
