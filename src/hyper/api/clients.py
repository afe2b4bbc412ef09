"""Typed clients of the tagger and ppm services (used by the router, the CLI and the loop)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np

from hyper.api import proto_convert, serving
from hyper.core.errors import HyperError
from hyper.core.features import FeatureMatrix
from hyper.core.schema import Instance, judge_confidences
from hyper.core.settings import Settings
from hyper.v1 import ppm_pb2, ppm_pb2_grpc, router_pb2, router_pb2_grpc, tagger_pb2, tagger_pb2_grpc


class ServiceClient:
    """A typed client of one service; `connect` is the one way the project makes one."""

    SERVICE = ""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel

    @classmethod
    def connect(cls, settings: Settings, **options):
        """A client of the service at the settings' address (TLS, retries: `serving.channel`)."""
        return cls(serving.channel(settings.address(cls.SERVICE), settings), **options)


@dataclass
class Tagged:
    features: FeatureMatrix
    raw: dict[str, np.ndarray]  # unbinned textual values per dimension (token counts, ...)


class TaggerClient(ServiceClient):
    SERVICE = "tagger"

    def __init__(self, channel: grpc.Channel):
        super().__init__(channel)
        self.stub = tagger_pb2_grpc.TaggerServiceStub(channel)

    def annotate(self, instances: list[Instance], timeout: float = 1800) -> list:
        return list(self.annotate_with_usage(instances, timeout).judgements)

    def annotate_with_usage(self, instances: list[Instance], timeout: float = 1800) -> tagger_pb2.AnnotateResponse:
        request = tagger_pb2.AnnotateRequest(instances=[proto_convert.instance_to_proto(i) for i in instances])
        return self.stub.Annotate(request, timeout=timeout)

    def feature_set_version(self) -> str:
        return self.stub.GetCatalogue(tagger_pb2.GetCatalogueRequest()).feature_set_version

    def tag(self, instances: list[Instance], timeout: float = 1800,
            chunk_size: int = 2000) -> FeatureMatrix:
        return self.tag_with_raw(instances, timeout, chunk_size).features

    def tag_with_raw(self, instances: list[Instance], timeout: float = 1800,
                     chunk_size: int = 2000) -> Tagged:
        """Pairs without their text (read from a large file, see Instance.without_text) are
        tagged by content key; others are streamed in chunks, so no message grows with the
        dataset."""
        if any(i.text_key for i in instances):
            return self.tag_cached(instances, timeout)
        chunks = (tagger_pb2.TagRequest(instances=[proto_convert.instance_to_proto(i)
                                                   for i in instances[start:start + chunk_size]])
                  for start in range(0, len(instances), chunk_size))
        response = self.stub.TagStream(chunks, timeout=timeout)
        names = sorted(response.raw[0].values) if response.raw else []
        raw = {name: np.array([r.values[name] for r in response.raw]) for name in names}
        return Tagged(proto_convert.feature_matrix_from_proto(response.features), raw)

    def missing_keys(self, keys: list[str], timeout: float = 1800) -> list[int]:
        """Positions of the content keys the tagger has not cached."""
        return list(self.stub.MissingKeys(tagger_pb2.KeysRequest(keys=keys), timeout=timeout).positions)

    def tag_cached(self, instances: list[Instance], timeout: float = 1800, chunk_size: int = 100_000) -> Tagged:
        confidence = judge_confidences(instances).tolist()
        chunks = (tagger_pb2.TagCachedRequest(keys=[i.content_key() for i in instances[start:start + chunk_size]],
                                              judge_confidence=confidence[start:start + chunk_size])
                  for start in range(0, len(instances), chunk_size))
        try:
            response = self.stub.TagCached(chunks, timeout=timeout)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            raise FeaturesNotCached(f"the tagger no longer holds features of pairs read earlier ({error.details()})"
                                    ": route again, the file will be read again") from error
        n, width = response.n_rows, len(response.feature_names)
        bits = np.unpackbits(np.frombuffer(response.packed_bits, dtype=np.uint8), count=n * width).reshape(n, width)
        raw = np.frombuffer(response.raw, dtype=np.float32).reshape(n, len(response.raw_names)).astype(np.float64)
        matrix = FeatureMatrix([i.id for i in instances], list(response.feature_names), bits,
                               response.feature_set_version)
        return Tagged(matrix, {name: raw[:, j] for j, name in enumerate(response.raw_names)})


class FeaturesNotCached(HyperError):
    """Pairs held by content key whose features the tagger has lost since (a restart without a
    shared cache): only reading the file again can tag them."""


class PPMClient(ServiceClient):
    SERVICE = "ppm"

    def __init__(self, channel: grpc.Channel, record_token: str = ""):
        super().__init__(channel)
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

    def fit_error_model(self, request: ppm_pb2.FitErrorModelRequest) -> ppm_pb2.ModelInfo:
        return self.stub.FitErrorModel(request, timeout=1800)

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


PAGE_SIZE = 100_000  # the largest page the router serves


class RouterClient(ServiceClient):
    SERVICE = "router"

    def __init__(self, channel: grpc.Channel):
        super().__init__(channel)
        self.stub = router_pb2_grpc.RouterServiceStub(channel)

    def route(self, request: router_pb2.RouteRequest, timeout: float = 1800) -> router_pb2.RouteResponse:
        return self.stub.Route(request, timeout=timeout)

    def get_route(self, route_id: str, page_size: int = 0, page_token: str = "") -> router_pb2.RouteResponse:
        return self.stub.GetRoute(router_pb2.GetRouteRequest(route_id=route_id, page_size=page_size,
                                                             page_token=page_token))

    def list_assignments(self, route_id: str, page_token: str, page_size: int = 0
                         ) -> router_pb2.ListAssignmentsResponse:
        return self.stub.ListAssignments(router_pb2.ListAssignmentsRequest(
            route_id=route_id, page_token=page_token, page_size=page_size))

    def assignment_pages(self, route_id: str, page_token: str, page_size: int = 0
                         ) -> Iterator[list[router_pb2.Assignment]]:
        """The route's assignments from `page_token` on, a page at a time (the largest pages
        unless `page_size` says)."""
        while page_token:
            page = self.list_assignments(route_id, page_token, page_size or PAGE_SIZE)
            yield list(page.assignments)
            page_token = page.next_page_token

    def with_all_assignments(self, response: router_pb2.RouteResponse) -> router_pb2.RouteResponse:
        """The response with the rest of its pages in place (a route small enough to hold)."""
        for page in self.assignment_pages(response.route_id, response.next_page_token):
            response.assignments.extend(page)
        response.next_page_token = ""
        return response

    def report(self, route_id: str, sample_size: int = 10, timeout: float = 1800) -> str:
        """The route explained as one offline HTML page."""
        request = router_pb2.ReportRequest(route_id=route_id, sample_size=sample_size)
        return self.stub.Report(request, timeout=timeout).html

    def diagnose(self, request: router_pb2.DiagnoseRequest, timeout: float = 1800) -> router_pb2.DiagnoseResponse:
        return self.stub.Diagnose(request, timeout=timeout)

    def delete_route(self, route_id: str) -> None:
        self.stub.DeleteRoute(router_pb2.DeleteRouteRequest(route_id=route_id))
