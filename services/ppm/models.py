"""The ppm service's core: record training runs, fit PPMs from them, version and serve them.

Plain Python over the two stores; the servicer only converts messages to these calls.
"""

from __future__ import annotations

import numpy as np

from hyper.errors import InvalidArgument
from hyper.ppm.fitting import fit_ppm
from hyper.ppm.store import DEFAULT_MODEL, ModelRegistry, RunStore, check_name

RUN_STATES = ("succeeded", "failed")


def training_data(runs: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(feature names, count vectors, eval scores) of the successful runs among `runs`."""
    succeeded = [run for run in runs if run.get("state") == "succeeded"]
    if not succeeded:
        raise InvalidArgument("experiment", "has no successful runs")
    feature_names = succeeded[0]["count_vector"]["feature_names"]
    if any(run["count_vector"]["feature_names"] != feature_names for run in succeeded):
        raise InvalidArgument("experiment", "runs disagree on the feature set")
    counts = np.array([run["count_vector"]["values"] for run in succeeded], dtype=np.float64)
    scores = np.array([run.get("eval_score", 0.0) for run in succeeded], dtype=np.float64)
    return feature_names, counts, scores


class PerformanceModels:
    def __init__(self, registry: ModelRegistry, runs: RunStore):
        self.registry = registry
        self.runs = runs

    def fit(self, model: str, kind: str, experiment: str, holdout_fraction: float, seed: int,
            n_bootstrap: int) -> dict:
        """Fits a PPM on the experiment's successful runs and stores it as the next version."""
        name = check_name("model", model or DEFAULT_MODEL)
        runs = self.runs.list(experiment)
        feature_names, counts, scores = training_data(runs)
        ppm = fit_ppm(feature_names, counts, scores, kind, holdout_fraction, seed, n_bootstrap)
        artifact = dict(ppm.to_json(), experiment=experiment,
                        training_runs=[r["run_id"] for r in runs if r.get("state") == "succeeded"])
        _, stored = self.registry.save(name, artifact)
        return stored

    def artifact(self, model: str, version: str = "") -> dict:
        """The stored artifact of a version ("" = the latest)."""
        return self.registry.load(model or DEFAULT_MODEL, version)

    def record_run(self, run: dict) -> bool:
        """True if this call recorded something new (see RunStore.record)."""
        if run.get("state") not in RUN_STATES:
            raise InvalidArgument("run.state", f"{run.get('state')!r} is not one of {RUN_STATES}")
        if run["state"] == "failed" and not run.get("failure_reason"):
            raise InvalidArgument("run.failure_reason", "a failed run needs its reason")
        return self.runs.record(run)

    def list_runs(self, experiment: str = "") -> list[dict]:
        return self.runs.list(experiment)
