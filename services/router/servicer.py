"""RouterService over gRPC: proto <-> core, validation, nothing else."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from hyper import wire
from hyper.clients import PPMClient, TaggerClient
from hyper.errors import InvalidArgument
from hyper.router.routing import RouteOptions, route
from hyper.router.selection import DEFAULT_CANDIDATES
from hyper.serving import rpc
from hyper.v1 import router_pb2, router_pb2_grpc

ROUTES = Counter("hyper_router_routes_total", "Route calls completed.", ["strategy"])
INSTANCES_ROUTED = Counter("hyper_router_instances_total", "Instances routed.", ["route"])
BUDGET_FRACTION = Histogram("hyper_router_budget_fraction", "Human share of routed datasets.",
                            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0))
PREDICTED_SCORE = Histogram("hyper_router_predicted_score", "PPM-predicted eval score of routes.",
                            buckets=(0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0))


def _budget(request) -> tuple[float | None, int | None]:
    which = request.budget.WhichOneof("amount")
    if which is None:
        raise InvalidArgument("budget", "give a fraction or a count")
    if which == "fraction":
        return request.budget.fraction, None
    return None, request.budget.count


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, tagger: TaggerClient, ppm: PPMClient):
        self.tagger = tagger
        self.ppm = ppm

    @rpc
    def Route(self, request, context):
        fraction, count = _budget(request)
        dataset = wire.dataset_from_proto(request.dataset)
        options = RouteOptions(request.strategy or "topk", request.seed,
                               request.n_candidates or DEFAULT_CANDIDATES,
                               request.ppm_model, request.ppm_version)
        plan = route(dataset, fraction, count, options, self.tagger, self.ppm)
        routes = ["human" if h else "ai" for h in plan.human]
        ROUTES.labels(options.strategy).inc()
        INSTANCES_ROUTED.labels("human").inc(int(plan.human.sum()))
        INSTANCES_ROUTED.labels("ai").inc(int((~plan.human).sum()))
        BUDGET_FRACTION.observe(plan.budget / len(plan.ids))
        PREDICTED_SCORE.observe(plan.predicted_score)
        return router_pb2.RouteResponse(
            assignments=[router_pb2.Assignment(id=i, route=r, gain=g)
                         for i, r, g in zip(plan.ids, routes, plan.gains.tolist())],
            predicted_score=plan.predicted_score, n_human=int(plan.human.sum()),
            n_instances=len(plan.ids), ppm_version=plan.ppm_version, strategy=options.strategy,
            count_vector=wire.count_vectors_to_proto(plan.feature_names, plan.count_vector),
            n_skipped_rows=dataset.n_skipped, budget_fraction=plan.budget / len(plan.ids))
