"""RouterService over gRPC: proto <-> core, validation, nothing else."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from google.protobuf import json_format
from prometheus_client import Counter, Histogram

from hyper import wire
from hyper.errors import InvalidArgument, NotFound
from hyper.atomic import write_json_atomic
from hyper.router.routing import (DEFAULT_SOURCE, Budget, CostModel, RouteOptions, Router, Source)
from hyper.router.selection import DEFAULT_CANDIDATES
from hyper.serving import rpc
from hyper.v1 import router_pb2, router_pb2_grpc

ROUTES = Counter("hyper_router_routes_total", "Route calls completed.", ["strategy"])
INSTANCES_ROUTED = Counter("hyper_router_instances_total", "Instances routed.", ["route"])
BUDGET_FRACTION = Histogram("hyper_router_budget_fraction", "Share of the budget's 100% spent.",
                            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0))
PREDICTED_SCORE = Histogram("hyper_router_predicted_score", "PPM-predicted eval score of routes.",
                            buckets=(0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0))


def budget_from_proto(message: router_pb2.Budget) -> Budget:
    which = message.WhichOneof("amount")
    return Budget(**({which: getattr(message, which)} if which else {}))


def options_from_proto(request: router_pb2.RouteRequest) -> RouteOptions:
    sources = [Source(s.name, s.cost or 1.0) for s in request.sources] or [Source(DEFAULT_SOURCE)]
    cost_model = (CostModel(request.human_cost_model.base, request.human_cost_model.per_1k_tokens,
                            dict(request.human_cost_model.feature_costs))
                  if request.HasField("human_cost_model") else None)
    return RouteOptions(request.strategy or "topk", request.seed,
                        request.n_candidates or DEFAULT_CANDIDATES, request.ppm_model,
                        request.ppm_version, request.epsilon, request.interval_level or 0.9,
                        request.budget_curve, request.curve_points or 11, sources, cost_model)


def response_from_plan(plan, options: RouteOptions, n_skipped: int) -> router_pb2.RouteResponse:
    curve = [router_pb2.CurvePoint(**vars(point)) for point in plan.curve]
    best = max(plan.curve, key=lambda p: p.predicted).budget_fraction if plan.curve else 0.0
    n_by_source = {}
    for route in plan.routes:
        n_by_source[route] = n_by_source.get(route, 0) + 1
    return router_pb2.RouteResponse(
        assignments=[router_pb2.Assignment(id=i, route=r, gain=g, cost=c) for i, r, g, c in
                     zip(plan.ids, plan.routes, plan.gains.tolist(), plan.costs.tolist())],
        predicted_score=plan.predicted_score, predicted_lower=plan.interval[0],
        predicted_upper=plan.interval[1], interval_level=options.interval_level,
        n_human=n_by_source.get(DEFAULT_SOURCE, 0), n_instances=len(plan.ids),
        ppm_version=plan.ppm_version, strategy=options.strategy,
        count_vector=wire.count_vectors_to_proto(plan.feature_names, plan.count_vector),
        n_skipped_rows=n_skipped, budget_fraction=plan.budget_fraction, budget_curve=curve,
        optimal_budget_fraction=best, total_cost=float(plan.costs.sum()), n_by_source=n_by_source)


class RouteStore:
    """Route results as JSON files, one per route id, written atomically."""

    ID = re.compile(r"^[0-9a-f]{32}$")

    def __init__(self, root: Path):
        self.root = Path(root) / "routes"

    def save(self, response: router_pb2.RouteResponse) -> None:
        write_json_atomic(self.root / f"{response.route_id}.json",
                          json_format.MessageToDict(response, preserving_proto_field_name=True))

    def load(self, route_id: str) -> router_pb2.RouteResponse:
        if not self.ID.match(route_id):
            raise InvalidArgument("route_id", f"{route_id!r} is not a route id (32 hex digits)")
        path = self.root / f"{route_id}.json"
        if not path.is_file():
            raise NotFound(f"no route {route_id}")
        return json_format.ParseDict(json.loads(path.read_text()), router_pb2.RouteResponse())


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, router: Router, store: RouteStore):
        self.router = router
        self.store = store

    @rpc
    def Route(self, request, context):
        dataset, key = self.router.load_dataset(request.dataset)
        options = options_from_proto(request)
        plan = self.router.route(dataset, budget_from_proto(request.budget), options, key)
        response = response_from_plan(plan, options, dataset.n_skipped)
        response.route_id = uuid.uuid4().hex
        self.store.save(response)
        ROUTES.labels(options.strategy).inc()
        for route, count in response.n_by_source.items():
            INSTANCES_ROUTED.labels(route).inc(count)
        BUDGET_FRACTION.observe(plan.budget_fraction)
        PREDICTED_SCORE.observe(plan.predicted_score)
        return response

    @rpc
    def GetRoute(self, request, context):
        return self.store.load(request.route_id)
