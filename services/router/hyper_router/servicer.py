"""RouterService over gRPC: proto in, one data-plane call, proto out (errors are mapped once, by
the server's interceptor)."""

from __future__ import annotations

from hyper.api import proto_convert
from hyper.v1 import router_pb2, router_pb2_grpc
from hyper_router.dataplane import RouterDataPlane
from hyper_router.store import page_size


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, dataplane: RouterDataPlane):
        self.dataplane = dataplane

    def Route(self, request, context):
        route = self.dataplane.route(proto_convert.dataset_source_from_proto(request.dataset),
                                     proto_convert.budget_from_proto(request),
                                     proto_convert.route_options_from_proto(request),
                                     page_size(request.page_size, "page_size"), caller_waiting=context.is_active)
        return proto_convert.route_result_to_proto(route)

    def DeleteRoute(self, request, context):
        self.dataplane.delete_route(request.route_id)
        return router_pb2.DeleteRouteResponse()

    def GetRoute(self, request, context):
        route = self.dataplane.get_route(request.route_id, page_size(request.page_size, "page_size"),
                                         request.page_token)
        return proto_convert.route_result_to_proto(route)

    def ListAssignments(self, request, context):
        assignments, token, total = self.dataplane.list_assignments(
            request.route_id, request.page_token, page_size(request.page_size, "page_size"))
        return router_pb2.ListAssignmentsResponse(assignments=proto_convert.assignments_to_proto(assignments),
                                                  next_page_token=token, n_assignments=total)

    def Report(self, request, context):
        return router_pb2.ReportResponse(html=self.dataplane.report(request.route_id, request.sample_size or 10))

    def Diagnose(self, request, context):
        roles = proto_convert.label_roles_from_proto(request)
        diagnosis = self.dataplane.diagnose(proto_convert.dataset_source_from_proto(request.dataset), roles,
                                            request.seed)
        return proto_convert.diagnosis_to_proto(diagnosis)
