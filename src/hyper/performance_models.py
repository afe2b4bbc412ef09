"""Performance prediction models (PPMs) as the ppm service stores them and the router uses them.

A PPM maps a mix's count vector to a predicted eval score. Linear and quadratic PPMs are one
quadratic form, f(c) = b + w.c + c'Qc (Q = 0 for linear), which gives the router exact
marginal gains; LightGBM PPMs are opaque and only predict. Each may carry a bootstrap ensemble
whose spread is the prediction interval. Artifacts are JSON (LightGBM as its text model
format), never pickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hyper.errors import InvalidArgument

ARTIFACT_FORMAT = "hyper.ppm/v2"
KINDS = ("linear", "quadratic", "lightgbm")


@dataclass
class QuadraticForm:
    intercept: float
    linear: np.ndarray  # (F,)
    quadratic: np.ndarray | None = None  # (F, F) symmetric, None for a linear model

    def predict(self, counts: np.ndarray) -> np.ndarray:
        counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
        out = counts @ self.linear + self.intercept
        if self.quadratic is not None:
            out += np.einsum("nf,nf->n", counts @ self.quadratic, counts)
        return out

    def gradient(self, counts: np.ndarray) -> np.ndarray:
        """df/dc at one count vector: w + 2Qc."""
        if self.quadratic is None:
            return self.linear.copy()
        return self.linear + 2.0 * (self.quadratic @ counts)

    def to_json(self) -> dict:
        return {"intercept": self.intercept, "linear": self.linear.tolist(),
                "quadratic": None if self.quadratic is None else self.quadratic.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> QuadraticForm:
        quadratic = data.get("quadratic")
        return cls(float(data["intercept"]), np.asarray(data["linear"], dtype=np.float64),
                   None if quadratic is None else np.asarray(quadratic, dtype=np.float64))


class LightGBMForm:
    """A LightGBM booster kept as its text model (loadable without pickles)."""

    def __init__(self, model_text: str):
        import lightgbm

        self.model_text = model_text
        self.booster = lightgbm.Booster(model_str=model_text)

    def predict(self, counts: np.ndarray) -> np.ndarray:
        return self.booster.predict(np.atleast_2d(np.asarray(counts, dtype=np.float64)))

    def to_json(self) -> dict:
        return {"model_text": self.model_text}

    @classmethod
    def from_json(cls, data: dict) -> LightGBMForm:
        return cls(data["model_text"])


def _form_from_json(kind: str, data: dict):
    return LightGBMForm.from_json(data) if kind == "lightgbm" else QuadraticForm.from_json(data)


@dataclass
class PerformanceModel:
    kind: str
    feature_names: list[str]
    form: QuadraticForm | LightGBMForm
    members: list = field(default_factory=list)  # bootstrap ensemble, same kind
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def quadratic_form(self) -> QuadraticForm | None:
        """The exact form when the model has one (linear, quadratic); None for LightGBM."""
        return self.form if isinstance(self.form, QuadraticForm) else None

    def predict(self, counts: np.ndarray) -> np.ndarray:
        return self.form.predict(counts)

    def predict_interval(self, counts: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Central `level` interval of the ensemble's predictions; the point itself without one."""
        if not self.members:
            point = self.predict(counts)
            return point, point
        spread = np.stack([member.predict(counts) for member in self.members])
        tail = (1.0 - level) / 2.0
        return np.quantile(spread, tail, axis=0), np.quantile(spread, 1.0 - tail, axis=0)

    def gains(self, binary_rows: np.ndarray) -> np.ndarray:
        """gain_i = PPM(instance i's binary vector) - PPM(zero vector)."""
        rows = np.atleast_2d(binary_rows).astype(np.float64)
        return self.predict(rows) - self.predict(np.zeros((1, rows.shape[1])))[0]

    def to_json(self) -> dict:
        return {"format": ARTIFACT_FORMAT, "kind": self.kind, "feature_names": self.feature_names,
                "form": self.form.to_json(), "members": [m.to_json() for m in self.members],
                "metrics": self.metrics}

    @classmethod
    def from_json(cls, data: dict) -> PerformanceModel:
        if data.get("format") != ARTIFACT_FORMAT or data.get("kind") not in KINDS:
            raise InvalidArgument("artifact", f"not a {ARTIFACT_FORMAT} model of kind {KINDS}")
        kind = data["kind"]
        return cls(kind, list(data["feature_names"]), _form_from_json(kind, data["form"]),
                   [_form_from_json(kind, m) for m in data.get("members", [])],
                   dict(data.get("metrics", {})))
