"""The router's Prometheus metrics: what its dashboards show of the routes it makes."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from hyper.api.messages import RouteResult

ROUTES = Counter("hyper_router_routes_total", "Route calls completed.", ["strategy"])
INSTANCES_ROUTED = Counter("hyper_router_instances_total", "Instances routed.", ["route"])
BUDGET_FRACTION = Histogram("hyper_router_budget_fraction", "Share of the budget's 100% spent.",
                            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0))
UNSKILLED = Counter("hyper_router_unskilled_routes_total",
                    "Routes answered without demonstrated skill (a gain over random, or a PPM's skill, whose "
                    "interval includes zero), with a warning.")
PREDICTED_SCORE = Histogram("hyper_router_predicted_score", "PPM-predicted eval score of routes.",
                            buckets=(0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0))


def count_route(route: RouteResult) -> None:
    ROUTES.labels(route.strategy).inc()
    for source, count in route.n_by_source.items():
        INSTANCES_ROUTED.labels(source).inc(count)
    BUDGET_FRACTION.observe(route.budget_fraction)
    unskilled_ppm = route.ppm_skill is not None and route.ppm_skill.ci_low <= 0.0
    if unskilled_ppm or (route.routing_gain is not None and route.routing_gain.ci_low <= 0.0):
        UNSKILLED.inc()
    if route.predicted_score is not None:
        PREDICTED_SCORE.observe(route.predicted_score)
