"""The router's Prometheus metrics: what its dashboards show of the routes it makes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

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

PHASE_SECONDS = Histogram("hyper_router_route_phase_seconds",
                          "Seconds a Route spends in each phase: read (a file read, validated and its new pairs "
                          "tagged), features (binned by the tagger), routing, save.", ["phase"],
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))


class Phases:
    """How long one Route spent in each phase: observed in PHASE_SECONDS and kept for its log line."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - began
            self.seconds[phase] = round(self.seconds.get(phase, 0.0) + elapsed, 4)
            PHASE_SECONDS.labels(phase).observe(elapsed)


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
