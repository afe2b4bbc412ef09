"""PPMService over gRPC: proto <-> core types, nothing else (errors are mapped once, by the
server's interceptor). Only RecordRun checks a credential: the training Jobs' token."""

from __future__ import annotations

import json

from google.protobuf import json_format
from prometheus_client import Counter, Gauge

from hyper.api import proto_convert
from hyper.core.errors import InvalidArgument
from hyper.v1 import common_pb2, ppm_pb2, ppm_pb2_grpc
from hyper_ppm.fitting import DEFAULT_CV_FOLDS
from hyper_ppm.histories import history_from_proto
from hyper_ppm.models import PerformanceModels
from hyper_ppm.store import DEFAULT_MODEL

RUNS_RECORDED = Counter("hyper_ppm_runs_recorded_total", "Training runs recorded.", ["state"])
MODELS_FITTED = Counter("hyper_ppm_models_fitted_total", "PPM versions fitted.", ["kind"])
MODEL_VERSION = Gauge("hyper_ppm_model_version", "Number of the latest fitted PPM version.", ["model"])


def model_info(artifact: dict, promoted: str) -> ppm_pb2.ModelInfo:
    experiments = artifact.get("experiments") or [e for e in [artifact.get("experiment", "")] if e]
    info = ppm_pb2.ModelInfo(
        model=artifact["model"], version=artifact["version"], kind=artifact["kind"],
        feature_names=artifact["feature_names"], n_runs=len(artifact.get("training_runs", [])),
        metrics=artifact.get("metrics", {}), created_at=artifact["created_at"], target=artifact["target"],
        experiments=experiments, promoted=artifact["version"] == promoted,
        imported_from=artifact.get("imported_from", ""),
        feature_set_version=artifact.get("feature_set_version", ""))
    if "skill" in artifact:  # a PPM's
        info.skill.CopyFrom(common_pb2.Skill(**artifact["skill"]))
    if "error_skill" in artifact:  # an error model's
        info.error_skill.CopyFrom(json_format.ParseDict(artifact["error_skill"], common_pb2.ErrorModelSkill()))
    return info


class PPMServicer(ppm_pb2_grpc.PPMServiceServicer):
    def __init__(self, models: PerformanceModels):
        self.models = models

    def _info(self, artifact: dict) -> ppm_pb2.ModelInfo:
        return model_info(artifact, self.models.registry.promoted(artifact["model"]))

    def _stored(self, stored: dict) -> ppm_pb2.ModelInfo:
        MODELS_FITTED.labels(stored["kind"]).inc()
        MODEL_VERSION.labels(stored["model"]).set(int(stored["version"].split("-")[0][1:]))
        return self._info(stored)

    def Fit(self, request, context):
        experiments = [e for e in [request.experiment, *request.experiments] if e]
        return self._stored(self.models.fit(request.model, request.kind or "linear", experiments,
                                            request.seed, request.cv_folds or DEFAULT_CV_FOLDS))

    def GetModel(self, request, context):
        return self._info(self.models.artifact(request.model, request.version))

    def ListModels(self, request, context):
        return ppm_pb2.ListModelsResponse(versions=[self._info(a) for a in self.models.registry.list()])

    def ImportModel(self, request, context):
        try:
            exported = json.loads(request.json)
        except ValueError as error:
            raise InvalidArgument("json", f"not JSON: {error}") from None
        if not isinstance(exported, dict):
            raise InvalidArgument("json", "expected a JSON object")
        return self._stored(self.models.import_artifact(request.model, exported))

    def Promote(self, request, context):
        return self._info(self.models.registry.promote(request.model or DEFAULT_MODEL, request.version))

    def GetArtifact(self, request, context):
        artifact = self.models.artifact(request.model, request.version)
        return ppm_pb2.ModelArtifact(version=artifact["version"], json=json.dumps(artifact))

    def RecordRun(self, request, context):
        run = request.run
        if run.state == "succeeded":
            proto_convert.count_vectors_from_proto(run.count_vector, "run.count_vector", rows=1)
        record = proto_convert.message_to_dict(run) | {"experiment": run.experiment, "run_id": run.run_id}
        created = self.models.record_run(record)
        if created:
            RUNS_RECORDED.labels(run.state).inc()
        return ppm_pb2.RecordRunResponse(created=created)

    def FitErrorModel(self, request, context):
        features, history = history_from_proto(request)
        return self._stored(self.models.fit_error_model(request.model, features, history, request.ai_source,
                                                        list(request.judges), request.seed, request.experiment))

    def ListRuns(self, request, context):
        runs = [json_format.ParseDict(r, ppm_pb2.Run(), ignore_unknown_fields=True)
                for r in self.models.list_runs(request.experiment)]
        return ppm_pb2.ListRunsResponse(runs=runs)
