"""The ppm service's core: record training runs, fit PPMs from them, version and serve them.

Plain Python over the two stores; the servicer only converts messages to these calls.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from hyper.core.errors import InvalidArgument
from hyper.core.features import FeatureMatrix
from hyper.method import label_quality
from hyper.method.error_models import KIND as ERROR_MODEL
from hyper.method.error_models import ErrorModel, History
from hyper.method.performance_models import PerformanceModel, artifact_digest
from hyper_ppm.fitting import DEFAULT_CV_FOLDS, fit_ppm
from hyper_ppm.store import DEFAULT_MODEL, ModelVersions, RunRecords, check_name

RUN_STATES = ("succeeded", "failed")


def training_data(runs: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray, str, int, str]:
    """(feature names, count vectors, eval scores, what the scores measure, the pool's size, the
    feature-set version) of the successful runs among `runs`; they must agree on the feature
    set, its version and on what they measured."""
    succeeded = [run for run in runs if run.get("state") == "succeeded"]
    if not succeeded:
        raise InvalidArgument("experiment", "has no successful runs")
    feature_names = succeeded[0]["count_vector"]["feature_names"]
    if any(run["count_vector"]["feature_names"] != feature_names for run in succeeded):
        raise InvalidArgument("experiment", "runs disagree on the feature set")
    versions = sorted({run.get("feature_set_version", "") for run in succeeded})
    if len(versions) > 1:  # the same tag names, computed by different models: counts that do not add up
        raise InvalidArgument("experiment", f"runs were counted on different feature-set versions: {versions}")
    targets = {run.get("score") or "rm_accuracy" for run in succeeded}
    if len(targets) > 1:
        raise InvalidArgument("experiment", f"runs measured different scores: {sorted(targets)}")
    counts = np.array([run["count_vector"]["values"] for run in succeeded], dtype=np.float64)
    scores = np.array([run.get("eval_score", 0.0) for run in succeeded], dtype=np.float64)
    pool_size = int(np.median([run.get("n_total", 0) for run in succeeded]))
    return feature_names, counts, scores, targets.pop(), pool_size, versions[0]


class PerformanceModels:
    def __init__(self, registry: ModelVersions, runs: RunRecords):
        self.registry = registry
        self.runs = runs

    def fit(self, model: str, kind: str, experiments: list[str], seed: int = 0,
            cv_folds: int = DEFAULT_CV_FOLDS) -> dict:
        """Fits a PPM on the experiments' successful runs (every run with no experiment named)
        and stores it as the next version."""
        name = check_name("model", model or DEFAULT_MODEL)
        runs = [run for experiment in dict.fromkeys(experiments or [""]) for run in self.runs.list(experiment)]
        feature_names, counts, scores, target, pool_size, version = training_data(runs)
        ppm = fit_ppm(feature_names, counts, scores, kind, target, seed, cv_folds, pool_size, version)
        artifact = dict(ppm.to_json(), experiment=",".join(experiments), experiments=list(experiments),
                        training_runs=[r["run_id"] for r in runs if r.get("state") == "succeeded"])
        _, stored = self.registry.save(name, artifact)
        return stored

    def fit_error_model(self, model: str, features: FeatureMatrix, history: History, ai_source: str,
                        judges: list[str], seed: int = 0, experiment: str = "") -> dict:
        """Fits an error model on labelled pairs and stores it as the next version of `model`
        (default "default.errors")."""
        name = check_name("model", model or f"{DEFAULT_MODEL}.errors")
        fitted = dataclasses.replace(label_quality.fit(history, features.feature_names, ai_source, judges, seed),
                                     feature_set_version=features.feature_set_version)
        artifact = dict(fitted.to_json(), experiment=experiment, experiments=[experiment] if experiment else [])
        _, stored = self.registry.save(name, artifact)
        return stored

    def import_artifact(self, model: str, exported: dict) -> dict:
        """Stores a PPM exported elsewhere as the next version of `model`, once its checksum
        and content check out (a file that does not is refused, nothing stored)."""
        artifact, digest = exported.get("artifact"), exported.get("sha256")
        if not isinstance(artifact, dict) or not isinstance(digest, str):
            raise InvalidArgument("json", "expected {\"artifact\": {...}, \"sha256\": \"...\"} as "
                                          "`hyper ppm export` writes it")
        if artifact_digest(artifact) != digest:
            raise InvalidArgument("json", "the artifact does not match its sha256: the file was changed or cut")
        try:
            (ErrorModel if artifact.get("kind") == ERROR_MODEL else PerformanceModel).from_json(artifact)
        except (KeyError, TypeError, ValueError, InvalidArgument) as error:
            raise InvalidArgument("json", f"not a model this version can use: {error}") from None
        origin = f"{artifact.get('model', '?')}/{artifact.get('version', '?')}"
        _, stored = self.registry.save(check_name("model", model or artifact.get("model") or DEFAULT_MODEL),
                                       artifact | {"imported_from": origin})
        return stored

    def export(self, model: str, version: str = "") -> dict:
        artifact = self.artifact(model, version)
        return {"artifact": artifact, "sha256": artifact_digest(artifact)}

    def artifact(self, model: str, version: str = "") -> dict:
        """The stored artifact of a version ("" = the latest)."""
        return self.registry.load(model or DEFAULT_MODEL, version)

    def record_run(self, run: dict) -> bool:
        """True if this call recorded something new (see RunRecords.record)."""
        if run.get("state") not in RUN_STATES:
            raise InvalidArgument("run.state", f"{run.get('state')!r} is not one of {RUN_STATES}")
        if run["state"] == "failed" and not run.get("failure_reason"):
            raise InvalidArgument("run.failure_reason", "a failed run needs its reason")
        scores = {"run.eval_score": run.get("eval_score", 0.0)} | {
            f"run.metrics[{name!r}]": value for name, value in run.get("metrics", {}).items()}
        for field, value in scores.items():  # a proto's NaN comes through its JSON form as the text "NaN"
            if not math.isfinite(float(value)):  # JSON has no NaN: readers would get null where a number belongs
                raise InvalidArgument(field, f"{value} is not a finite number")
        return self.runs.record(run)

    def list_runs(self, experiment: str = "") -> list[dict]:
        return self.runs.list(experiment)
