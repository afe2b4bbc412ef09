"""PPMService over gRPC: proto <-> core, validation, nothing else."""

from __future__ import annotations

import functools
import hmac
import json

import numpy as np
from google.protobuf import json_format
from prometheus_client import Counter, Gauge

from hyper import wire
from hyper.errors import InvalidArgument, Unauthenticated
from hyper.performance_models import PerformanceModel
from hyper.ppm.fitting import fit_ppm
from hyper.ppm.store import DEFAULT_MODEL, ModelRegistry, RunStore, check_name
from hyper.serving import rpc
from hyper.v1 import ppm_pb2, ppm_pb2_grpc

RUNS_RECORDED = Counter("hyper_ppm_runs_recorded_total", "Training runs recorded.", ["state"])
MODELS_FITTED = Counter("hyper_ppm_models_fitted_total", "PPM versions fitted.", ["kind"])
MODEL_VERSION = Gauge("hyper_ppm_model_version", "Number of the latest fitted PPM version.", ["model"])
RUN_STATES = ("succeeded", "failed")


def _aligned(model: PerformanceModel, names: list[str], values: np.ndarray, field: str) -> np.ndarray:
    """Columns reordered to the model's features; features the model lacks must be unused."""
    index = {name: i for i, name in enumerate(names)}
    missing = [name for name in model.feature_names if name not in index]
    if missing:
        raise InvalidArgument(f"{field}.feature_names", f"lacks model features {missing[:5]}")
    return values[:, [index[name] for name in model.feature_names]]


def _run_to_dict(run: ppm_pb2.Run) -> dict:
    return json_format.MessageToDict(run, preserving_proto_field_name=True)


class PPMServicer(ppm_pb2_grpc.PPMServiceServicer):
    def __init__(self, registry: ModelRegistry, runs: RunStore, record_token: str = ""):
        self.registry = registry
        self.runs = runs
        self.record_token = record_token

    def _check_recorder(self, context) -> None:
        """Only the training Jobs record runs when a record token is configured."""
        if not self.record_token:
            return
        presented = dict(context.invocation_metadata()).get("authorization", "")
        if not hmac.compare_digest(presented, f"Bearer {self.record_token}"):
            raise Unauthenticated("RecordRun needs the run-recording token (HYPER_PPM_RECORD_TOKEN)")

    @functools.lru_cache(maxsize=32)
    def _model(self, model: str, version: str) -> tuple[PerformanceModel, str]:
        artifact = self.registry.load(model, version)
        return PerformanceModel.from_json(artifact), artifact["version"]

    def _resolve(self, model: str, version: str) -> tuple[PerformanceModel, str]:
        # "latest" is resolved on every call so a new fit is picked up; versions are immutable.
        name = model or DEFAULT_MODEL
        resolved = version or self.registry.load(name)["version"]
        return self._model(name, resolved)

    @rpc
    def Predict(self, request, context):
        model, version = self._resolve(request.model, request.version)
        names, values = wire.count_vectors_from_proto(request.count_vectors)
        counts = _aligned(model, names, values, "count_vectors")
        level = request.interval_level or 0.9
        if not 0.0 < level < 1.0:
            raise InvalidArgument("interval_level", f"{level} is not in (0, 1)")
        lower, upper = model.predict_interval(counts, level)
        return ppm_pb2.PredictResponse(predictions=model.predict(counts).tolist(),
                                       model_version=version, lower=lower.tolist(),
                                       upper=upper.tolist())

    @rpc
    def Gains(self, request, context):
        model, version = self._resolve(request.model, request.version)
        matrix = wire.feature_matrix_from_proto(request.features)
        bits = _aligned(model, matrix.feature_names, matrix.bits, "features")
        return ppm_pb2.GainsResponse(gains=model.gains(bits).tolist(), model_version=version)

    @rpc
    def Fit(self, request, context):
        name = check_name("model", request.model or DEFAULT_MODEL)
        runs = [r for r in self.runs.list(request.experiment) if r.get("state") == "succeeded"]
        if not runs:
            raise InvalidArgument("experiment", f"no successful runs for {request.experiment!r}")
        feature_names = runs[0]["count_vector"]["feature_names"]
        if any(r["count_vector"]["feature_names"] != feature_names for r in runs):
            raise InvalidArgument("experiment", "runs disagree on the feature set")
        counts = np.array([r["count_vector"]["values"] for r in runs], dtype=np.float64)
        scores = np.array([r.get("eval_score", 0.0) for r in runs], dtype=np.float64)
        ppm = fit_ppm(feature_names, counts, scores, request.kind or "linear",
                      request.holdout_fraction, request.seed, request.n_bootstrap)
        artifact = dict(ppm.to_json(), experiment=request.experiment,
                        training_runs=[r["run_id"] for r in runs])
        version, stored = self.registry.save(name, artifact)
        MODELS_FITTED.labels(ppm.kind).inc()
        MODEL_VERSION.labels(name).set(int(version.split("-")[0][1:]))
        return self._info(stored)

    @rpc
    def GetModel(self, request, context):
        return self._info(self.registry.load(request.model or DEFAULT_MODEL, request.version))

    @rpc
    def GetArtifact(self, request, context):
        artifact = self.registry.load(request.model or DEFAULT_MODEL, request.version)
        return ppm_pb2.ModelArtifact(version=artifact["version"], json=json.dumps(artifact))

    @staticmethod
    def _info(artifact: dict) -> ppm_pb2.ModelInfo:
        return ppm_pb2.ModelInfo(
            model=artifact["model"], version=artifact["version"], kind=artifact["kind"],
            feature_names=artifact["feature_names"], n_runs=len(artifact.get("training_runs", [])),
            metrics=artifact.get("metrics", {}), created_at=artifact["created_at"])

    @rpc
    def RecordRun(self, request, context):
        self._check_recorder(context)
        run = request.run
        if run.state not in RUN_STATES:
            raise InvalidArgument("run.state", f"{run.state!r} is not one of {RUN_STATES}")
        if run.state == "succeeded":
            names, values = wire.count_vectors_from_proto(run.count_vector, "run.count_vector")
            if values.shape[0] != 1:
                raise InvalidArgument("run.count_vector", "must hold exactly one vector")
        elif not run.failure_reason:
            raise InvalidArgument("run.failure_reason", "a failed run needs its reason")
        created = self.runs.record(_run_to_dict(run) | {"experiment": run.experiment,
                                                        "run_id": run.run_id})
        if created:
            RUNS_RECORDED.labels(run.state).inc()
        return ppm_pb2.RecordRunResponse(created=created)

    @rpc
    def ListRuns(self, request, context):
        runs = [json_format.ParseDict(r, ppm_pb2.Run(), ignore_unknown_fields=True)
                for r in self.runs.list(request.experiment)]
        return ppm_pb2.ListRunsResponse(runs=runs)
