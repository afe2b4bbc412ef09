"""Performance prediction models (PPMs) as the ppm service stores them and the router uses them.

A PPM maps a mix's count vector to a predicted eval score. Count vectors count per 1,000
instances of the dataset the mix is drawn from (`hyper.method.candidates.COUNT_SCALE`), so a PPM fitted
on one dataset applies to another of a different size. Linear and quadratic PPMs are one
quadratic form, f(c) = b + w.c + c'Qc (Q = 0 for linear), which gives the router exact
marginal gains; LightGBM PPMs are opaque and only predict.

Prediction intervals are split-conformal: the point prediction plus or minus a quantile of the
PPM's cross-validated absolute errors on its own runs, so an interval always contains its
point and, for a new run like the ones it was fitted on, covers its score at the nominal rate.
A label-accuracy PPM routing another dataset of n pairs also meets two kinds of luck: which of
the new pairs the judge got wrong, and which of its own N pool pairs it learnt from. Its
interval then adds, in quadrature, the binomial spread p(1-p)(1/n + 1/N) of comparing two
accuracies over n and N pairs, so that it covers the realised label accuracy of the routed set
(a simulation test checks the coverage of both kinds of interval).
Every PPM also carries its skill: the cross-validated Spearman correlation between predicted
and measured scores, with a bootstrap interval. Artifacts are JSON (LightGBM as its text model
format), never pickles.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from hyper.core.errors import InvalidArgument

ARTIFACT_FORMAT = "hyper.ppm/v3"


def artifact_digest(artifact: dict) -> str:
    """The checksum an exported artifact travels with (`hyper ppm export` / ImportModel)."""
    return hashlib.sha256(json.dumps(artifact, sort_keys=True).encode()).hexdigest()
KINDS = ("linear", "quadratic", "lightgbm")
GAIN_BLOCK = 65_536
# What a PPM's runs measured: the proxy reward model's accuracy on held-out pairs (the paper's
# target), or the label accuracy of the hybrid training set against the reference labels.
TARGETS = ("rm_accuracy", "label_accuracy")


def conformal_halfwidth(residuals: np.ndarray, level: float) -> float:
    """The ceil((n + 1) * level)-th smallest absolute residual: the half-width of a split-
    conformal interval at `level`. With too few residuals for the level, the largest one
    (the interval is then narrower than the level promises; `Skill.n_runs` tells how many)."""
    ordered = np.sort(np.abs(np.asarray(residuals, dtype=np.float64)))
    if len(ordered) == 0:
        return 0.0
    rank = min(math.ceil((len(ordered) + 1) * level), len(ordered))
    return float(ordered[rank - 1])


@dataclass
class Skill:
    """Cross-validated Spearman correlation of predicted with measured scores over the runs,
    and its 95% bootstrap interval; skill is demonstrated only when the interval excludes 0."""

    spearman: float
    ci_low: float
    ci_high: float
    n_runs: int

    @property
    def demonstrated(self) -> bool:
        return self.ci_low > 0.0

    def to_json(self) -> dict:
        return {"spearman": self.spearman, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "n_runs": self.n_runs}


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
    skill: Skill
    residuals: np.ndarray  # cross-validated absolute errors on the runs, for the intervals
    target: str = "rm_accuracy"
    pool_size: int = 0  # pairs of the dataset the runs' mixes were drawn from (0: unknown)
    metrics: dict[str, float] = field(default_factory=dict)
    imported_from: str = ""  # model/version where it was fitted, when imported: its skill is not verified here
    feature_set_version: str = ""  # the tagger's, for the features its runs were counted on ("": not recorded)

    @property
    def quadratic_form(self) -> QuadraticForm | None:
        """The exact form when the model has one (linear, quadratic); None for LightGBM."""
        return self.form if isinstance(self.form, QuadraticForm) else None

    def predict(self, counts: np.ndarray) -> np.ndarray:
        return self.form.predict(counts)

    def predict_interval(self, counts: np.ndarray, level: float, n_pairs: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """A `level` prediction interval around each point prediction: split-conformal, widened
        by the sampling spread of `n_pairs` pairs for a label-accuracy PPM applied to them."""
        point = self.predict(counts)
        halfwidth = np.full(point.shape, conformal_halfwidth(self.residuals, level))
        if n_pairs and self.target == "label_accuracy":
            p = np.clip(point, 0.0, 1.0)
            pairs = 1 / n_pairs + (1 / self.pool_size if self.pool_size else 0.0)
            sampling = NormalDist().inv_cdf(0.5 + level / 2) * np.sqrt(p * (1 - p) * pairs)
            halfwidth = np.sqrt(halfwidth**2 + sampling**2)
        return point - halfwidth, point + halfwidth

    def gains(self, binary_rows: np.ndarray) -> np.ndarray:
        """gain_i = PPM(instance i's binary vector) - PPM(zero vector). In blocks of rows: a
        million rows at once would take float64 copies of 750 MB each."""
        rows = np.atleast_2d(binary_rows)
        zero = self.predict(np.zeros((1, rows.shape[1])))[0]
        return np.concatenate([self.predict(rows[start:start + GAIN_BLOCK]) - zero
                               for start in range(0, len(rows), GAIN_BLOCK)] or [np.zeros(0)])

    def to_json(self) -> dict:
        return {"format": ARTIFACT_FORMAT, "kind": self.kind, "feature_names": self.feature_names,
                "form": self.form.to_json(), "skill": self.skill.to_json(),
                "residuals": self.residuals.tolist(), "target": self.target,
                "pool_size": self.pool_size, "metrics": self.metrics,
                "feature_set_version": self.feature_set_version}

    @classmethod
    def from_json(cls, data: dict) -> PerformanceModel:
        if data.get("format") != ARTIFACT_FORMAT or data.get("kind") not in KINDS:
            raise InvalidArgument("artifact", f"not a {ARTIFACT_FORMAT} model of kind {KINDS} "
                                              f"(format {data.get('format')!r}: refit it)")
        kind = data["kind"]
        model = cls(kind, list(data["feature_names"]), _form_from_json(kind, data["form"]),
                    Skill(**data["skill"]), np.asarray(data["residuals"], dtype=np.float64),
                    data["target"], int(data.get("pool_size", 0)), dict(data.get("metrics", {})),
                    str(data.get("imported_from", "")), str(data.get("feature_set_version", "")))
        model.check()
        return model

    def check(self) -> None:
        """Refuses, naming the part, a model a Route could not use or whose skill cannot be
        true (a file edited or built elsewhere): it fails here, not as INTERNAL in every Route."""
        n = len(self.feature_names)
        if self.target not in TARGETS:
            raise InvalidArgument("artifact.target", f"{self.target!r} is not one of {TARGETS}")
        form = self.quadratic_form
        if form is not None and (form.linear.shape != (n,) or (
                form.quadratic is not None and form.quadratic.shape != (n, n))):
            raise InvalidArgument("artifact.form", f"its weights do not fit its {n} features")
        if form is not None and not (np.isfinite(form.linear).all() and np.isfinite(form.intercept)):
            raise InvalidArgument("artifact.form", "its weights are not all finite numbers")
        if isinstance(self.form, LightGBMForm) and self.form.booster.num_feature() != n:
            raise InvalidArgument("artifact.form", f"its trees read {self.form.booster.num_feature()} features, "
                                                   f"it names {n}")
        skill = self.skill
        if not all(-1.0 <= value <= 1.0 for value in (skill.spearman, skill.ci_low, skill.ci_high)) or (
                skill.ci_low > skill.ci_high):
            raise InvalidArgument("artifact.skill", f"Spearman {skill.spearman} [{skill.ci_low}, {skill.ci_high}] "
                                                    "is not a correlation with its interval")
        if not (np.isfinite(self.residuals).all() and (self.residuals >= 0).all()):
            raise InvalidArgument("artifact.residuals", "absolute errors must be finite and not negative")
