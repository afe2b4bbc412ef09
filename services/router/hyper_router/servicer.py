"""RouterService over gRPC: proto <-> core types, nothing else (errors are mapped once, by the
server's interceptor)."""

from __future__ import annotations

import uuid
from collections import Counter as Tally

from prometheus_client import Counter, Histogram

from hyper.api import proto_convert
from hyper.api.messages import DEFAULT_SOURCE, RouteOptions
from hyper.core.errors import InvalidArgument
from hyper.core.schema import Dataset
from hyper.core.stats import Estimate
from hyper.data.label_sources import LabelRoles
from hyper.reports.route_report import render_html
from hyper.v1 import common_pb2, router_pb2, router_pb2_grpc
from hyper_router.diagnosis import Diagnosis
from hyper_router.routing import RoutePlan, Router
from hyper_router.store import ALL, AssignmentColumns, RouteStore, page_size

ROUTES = Counter("hyper_router_routes_total", "Route calls completed.", ["strategy"])
INSTANCES_ROUTED = Counter("hyper_router_instances_total", "Instances routed.", ["route"])
BUDGET_FRACTION = Histogram("hyper_router_budget_fraction", "Share of the budget's 100% spent.",
                            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0))
UNSKILLED = Counter("hyper_router_unskilled_routes_total",
                    "Routes answered with a PPM whose skill interval includes zero (with a warning).")
PREDICTED_SCORE = Histogram("hyper_router_predicted_score", "PPM-predicted eval score of routes.",
                            buckets=(0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0))


def response_from_plan(plan: RoutePlan, options: RouteOptions, n_skipped: int) -> router_pb2.RouteResponse:
    """The response without its assignments (see assignments_of)."""
    curve = [router_pb2.CurvePoint(**point.model_dump()) for point in plan.curve]
    best = max(plan.curve, key=lambda p: p.predicted).budget_fraction if plan.curve else None
    n_by_source = dict(Tally(plan.routes))
    return router_pb2.RouteResponse(
        warnings=plan.warnings, ppm_skill=common_pb2.Skill(**plan.skill.to_json()),
        ppm_target=plan.target, n_forced_human=plan.n_forced,
        predicted_score=plan.predicted_score, predicted_lower=plan.interval[0],
        predicted_upper=plan.interval[1], interval_level=options.interval_level,
        n_human=n_by_source.get(DEFAULT_SOURCE, 0), n_instances=len(plan.ids),
        ppm_version=plan.ppm_version, strategy=options.strategy,
        count_vector=proto_convert.count_vectors_to_proto(plan.feature_names, plan.count_vector),
        n_skipped_rows=n_skipped, budget_fraction=plan.budget_fraction, budget_curve=curve,
        optimal_budget_fraction=best, total_cost=float(plan.costs.sum()), n_by_source=n_by_source)


def assignments_of(plan: RoutePlan) -> AssignmentColumns:
    return AssignmentColumns(plan.ids, plan.routes, plan.gains, plan.costs)


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, router: Router, store: RouteStore):
        self.router = router
        self.store = store

    def _dataset(self, message):
        """The request's dataset and its memo key (None: the router fingerprints it)."""
        if message.WhichOneof("source") == "ref":
            return self.router.load_dataset(proto_convert.dataset_ref_from_proto(message.ref))
        if message.WhichOneof("source") == "inline":
            instances = proto_convert.instances_from_proto(message.inline.instances, "dataset.inline")
            return Dataset(instances, source="inline"), None
        raise InvalidArgument("dataset", "give inline instances or a ref to a file")

    def Route(self, request, context):
        options = proto_convert.route_options_from_proto(request)
        budget = proto_convert.budget_from_proto(request.budget)
        size = page_size(request.page_size, "page_size")
        dataset, key = self._dataset(request.dataset)
        plan = self.router.route(dataset, budget, options, key)
        response = response_from_plan(plan, options, dataset.n_skipped)
        response.route_id = uuid.uuid4().hex
        response.ai_source = options.ai_source
        response.ppm_model = options.ppm_model
        response.judges.extend(options.judges)
        if request.dataset.WhichOneof("source") == "ref":
            response.dataset_ref.CopyFrom(request.dataset.ref)
        self.store.save(response, assignments_of(plan))
        self._count(plan, options, response)
        return self.store.load(response.route_id, size)

    def _count(self, plan: RoutePlan, options: RouteOptions, response: router_pb2.RouteResponse) -> None:
        ROUTES.labels(options.strategy).inc()
        for route, count in response.n_by_source.items():
            INSTANCES_ROUTED.labels(route).inc(count)
        BUDGET_FRACTION.observe(plan.budget_fraction)
        if not plan.skill.demonstrated:
            UNSKILLED.inc()
        PREDICTED_SCORE.observe(plan.predicted_score)

    def GetRoute(self, request, context):
        return self.store.load(request.route_id, page_size(request.page_size, "page_size"))

    def ListAssignments(self, request, context):
        assignments, token, total = self.store.page(request.route_id, request.page_token,
                                                    page_size(request.page_size, "page_size"))
        return router_pb2.ListAssignmentsResponse(assignments=assignments, next_page_token=token, n_assignments=total)

    def Report(self, request, context):
        route = proto_convert.route_result_from_proto(self.store.load(request.route_id, ALL))
        if route.dataset_ref is None:
            raise InvalidArgument("route_id", "the route was given its pairs inline: only a route of a file "
                                              "(dataset.ref) can be explained again")
        dataset, key = self.router.load_dataset(route.dataset_ref.to_dataset_ref())
        report = self.router.report(route, dataset, key, request.sample_size or 10)
        return router_pb2.ReportResponse(html=render_html(report))

    def Diagnose(self, request, context):
        if not request.ai_source:
            raise InvalidArgument("ai_source", "is required: the label source of the AI judge")
        roles = LabelRoles(request.human_source or "human", request.ai_source, tuple(request.reference),
                           tuple(request.judges))
        dataset, key = self._dataset(request.dataset)
        return diagnosis_to_proto(self.router.diagnose(dataset, roles, request.seed, key))


def estimate(value: Estimate) -> router_pb2.Estimate:
    return router_pb2.Estimate(**value.to_json())


def diagnosis_to_proto(diagnosis: Diagnosis) -> router_pb2.DiagnoseResponse:
    return router_pb2.DiagnoseResponse(
        n_pairs=diagnosis.n_pairs, n_scored=diagnosis.n_scored, n_forced_human=diagnosis.n_forced_human,
        notes=diagnosis.notes, judge_error_rate=estimate(diagnosis.judge_error_rate),
        agreement=[router_pb2.SourceAgreement(source=s, agreement=estimate(e))
                   for s, e in diagnosis.agreement.items()],
        worst_features=[router_pb2.FeatureErrors(feature=name, n=n, error_rate=estimate(e))
                        for name, n, e in diagnosis.feature_errors[:10]],
        error_auc=[router_pb2.ErrorAuc(inputs=name, auc=estimate(e)) for name, e in diagnosis.error_auc.items()],
        budgets=diagnosis.budgets, verdict=diagnosis.verdict(),
        expected_accuracy=[router_pb2.AccuracyCurve(strategy=name, label_accuracy=curve)
                           for name, curve in diagnosis.expected_accuracy.items()])
