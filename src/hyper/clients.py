"""Typed clients of the tagger and ppm services (used by the router, the CLI and the loop)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from hyper import wire
from hyper.features import FeatureMatrix
from hyper.schema import Instance
from hyper.v1 import ppm_pb2, ppm_pb2_grpc, router_pb2, router_pb2_grpc, tagger_pb2, tagger_pb2_grpc


@dataclass
class Tagged:
    features: FeatureMatrix
    raw: dict[str, np.ndarray]  # unbinned textual values per dimension (token counts, ...)


class TaggerClient:
    def __init__(self, channel):
        self.stub = tagger_pb2_grpc.TaggerServiceStub(channel)

    def annotate(self, instances: list[Instance], timeout: float = 1800) -> list:
        return list(self.annotate_with_usage(instances, timeout).judgements)

    def annotate_with_usage(self, instances: list[Instance], timeout: float = 1800) -> tagger_pb2.AnnotateResponse:
        request = tagger_pb2.AnnotateRequest(instances=[wire.instance_to_proto(i) for i in instances])
        return self.stub.Annotate(request, timeout=timeout)

    def feature_set_version(self) -> str:
        return self.stub.GetCatalogue(tagger_pb2.GetCatalogueRequest()).feature_set_version

    def tag(self, instances: list[Instance], timeout: float = 1800,
            chunk_size: int = 2000) -> FeatureMatrix:
        return self.tag_with_raw(instances, timeout, chunk_size).features

    def tag_with_raw(self, instances: list[Instance], timeout: float = 1800,
                     chunk_size: int = 2000) -> Tagged:
        """Streams the dataset in chunks, so no single message grows with the dataset."""
        chunks = (tagger_pb2.TagRequest(instances=[wire.instance_to_proto(i)
                                                   for i in instances[start:start + chunk_size]])
                  for start in range(0, len(instances), chunk_size))
        response = self.stub.TagStream(chunks, timeout=timeout)
        names = sorted(response.raw[0].values) if response.raw else []
        raw = {name: np.array([r.values[name] for r in response.raw]) for name in names}
        return Tagged(wire.feature_matrix_from_proto(response.features), raw)


class PPMClient:
    def __init__(self, channel, record_token: str = ""):
        self.stub = ppm_pb2_grpc.PPMServiceStub(channel)
        self.record_token = record_token  # only the training Jobs record runs

    def record_run(self, run: ppm_pb2.Run) -> bool:
        token = self.record_token
        metadata = [("authorization", f"Bearer {token}")] if token else None
        return self.stub.RecordRun(ppm_pb2.RecordRunRequest(run=run), metadata=metadata).created

    def fit(self, model: str, kind: str, experiments: str | list[str], seed: int = 0, cv_folds: int = 0
            ) -> ppm_pb2.ModelInfo:
        names = [experiments] if isinstance(experiments, str) else list(experiments)
        return self.stub.Fit(ppm_pb2.FitRequest(model=model, kind=kind, experiments=names,
                                                seed=seed, cv_folds=cv_folds))

    def list_models(self) -> list[ppm_pb2.ModelInfo]:
        return list(self.stub.ListModels(ppm_pb2.ListModelsRequest()).versions)

    def import_model(self, model: str, exported_json: str) -> ppm_pb2.ModelInfo:
        return self.stub.ImportModel(ppm_pb2.ImportModelRequest(model=model, json=exported_json))

    def promote(self, model: str, version: str) -> ppm_pb2.ModelInfo:
        return self.stub.Promote(ppm_pb2.PromoteRequest(model=model, version=version))

    def current_version(self, model: str = "") -> str:
        return self.info(model).version

    def info(self, model: str = "", version: str = "") -> ppm_pb2.ModelInfo:
        return self.stub.GetModel(ppm_pb2.GetModelRequest(model=model, version=version))

    def artifact(self, model: str = "", version: str = "") -> dict:
        """The stored artifact (format hyper.ppm/v3) of a version ("" = the promoted one, else
        the latest)."""
        response = self.stub.GetArtifact(ppm_pb2.GetModelRequest(model=model, version=version))
        return json.loads(response.json)

    def list_runs(self, experiment: str = "") -> list[ppm_pb2.Run]:
        return list(self.stub.ListRuns(ppm_pb2.ListRunsRequest(experiment=experiment)).runs)


class RouterClient:
    def __init__(self, channel):
        self.stub = router_pb2_grpc.RouterServiceStub(channel)

    def route(self, request: router_pb2.RouteRequest, timeout: float = 1800) -> router_pb2.RouteResponse:
        return self.stub.Route(request, timeout=timeout)

    def get_route(self, route_id: str) -> router_pb2.RouteResponse:
        return self.stub.GetRoute(router_pb2.GetRouteRequest(route_id=route_id))

    def report(self, route_id: str, sample_size: int = 10, timeout: float = 1800) -> str:
        """The route explained as one offline HTML page."""
        request = router_pb2.ReportRequest(route_id=route_id, sample_size=sample_size)
        return self.stub.Report(request, timeout=timeout).html

    def diagnose(self, request: router_pb2.DiagnoseRequest, timeout: float = 1800) -> router_pb2.DiagnoseResponse:
        return self.stub.Diagnose(request, timeout=timeout)
