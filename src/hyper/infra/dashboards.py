"""Grafana dashboards for the services' Prometheus metrics, written as JSON into the chart
(helm/hyper/dashboards/), which provisions them as ConfigMaps for Grafana's sidecar.

The panels and their PromQL live here, once; `python -m hyper.infra.dashboards [DIR]` regenerates
the JSON files and a test fails when the committed files differ from this module.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

CHART_DASHBOARDS = Path(__file__).resolve().parents[3] / "helm" / "hyper" / "dashboards"
WINDOW = "5m"
SLOW_WINDOW = "1h"  # routing and training events are rare; a longer window smooths them


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""


def rate(metric: str, by: str = "", window: str = WINDOW, selector: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{selector}[{window}]))"


def quantile(q: float, histogram: str, by: str = "", window: str = WINDOW, selector: str = "") -> str:
    grouping = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({q}, sum by ({grouping}) (rate({histogram}_bucket{selector}[{window}])))"


def ratio(numerator: str, denominator: str) -> str:
    return f"{numerator} / {denominator}"


GRPC_LATENCY = "grpc_server_handling_seconds"
DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "hyper-services": ("HyPER / Services", [
        Panel("gRPC requests by method", ((rate("grpc_server_handled_total", "grpc_service, grpc_method"),
                                          "{{grpc_service}} {{grpc_method}}"),), "reqps"),
        Panel("gRPC error ratio by service", ((ratio(
            rate("grpc_server_handled_total", "grpc_service", selector='{grpc_code!="OK"}'),
            rate("grpc_server_handled_total", "grpc_service")), "{{grpc_service}}"),), "percentunit"),
        Panel("gRPC errors by code", ((rate("grpc_server_handled_total", "grpc_service, grpc_code",
                                            selector='{grpc_code!="OK"}'),
                                       "{{grpc_service}} {{grpc_code}}"),), "reqps"),
        Panel("gRPC latency p50 / p99", (
            (quantile(0.5, GRPC_LATENCY, "grpc_service, grpc_method"), "p50 {{grpc_service}} {{grpc_method}}"),
            (quantile(0.99, GRPC_LATENCY, "grpc_service, grpc_method"), "p99 {{grpc_service}} {{grpc_method}}")),
            "s"),
        Panel("Queue depth (RPCs in flight)", (("sum by (grpc_service) (grpc_server_in_flight_requests)",
                                                "{{grpc_service}}"),), "short",
              description="RPCs being handled or waiting for a worker thread."),
        Panel("REST gateway requests by route and code", (
            (rate("hyper_gateway_requests_total", "route, code"), "{{route}} {{code}}"),), "reqps"),
        Panel("REST gateway latency p99", ((quantile(0.99, "hyper_gateway_request_duration_seconds", "route"),
                                            "{{route}}"),), "s"),
        Panel("Resident memory", (("max by (instance) (process_resident_memory_bytes)", "{{instance}}"),),
              "bytes"),
    ]),
    "hyper-routing": ("HyPER / Routing", [
        Panel("Route calls by strategy", ((rate("hyper_router_routes_total", "strategy"), "{{strategy}}"),),
              "reqps"),
        Panel("Instances routed, human vs AI", ((rate("hyper_router_instances_total", "route"), "{{route}}"),),
              "short"),
        Panel("Human share of routed instances", ((ratio(
            rate("hyper_router_instances_total", window=SLOW_WINDOW, selector='{route="human"}'),
            rate("hyper_router_instances_total", window=SLOW_WINDOW)), "human share"),),
            "percentunit", "stat"),
        Panel("Budget spent (mean share of the budget)", ((ratio(
            rate("hyper_router_budget_fraction_sum", window=SLOW_WINDOW),
            rate("hyper_router_budget_fraction_count", window=SLOW_WINDOW)), "mean"),), "percentunit", "stat"),
        Panel("Predicted eval score of routes (median, p10)", (
            (quantile(0.5, "hyper_router_predicted_score", window=SLOW_WINDOW), "median"),
            (quantile(0.1, "hyper_router_predicted_score", window=SLOW_WINDOW), "p10")), "percentunit"),
        Panel("Route latency p50 / p99", (
            (quantile(0.5, GRPC_LATENCY, selector='{grpc_method="Route"}'), "p50"),
            (quantile(0.99, GRPC_LATENCY, selector='{grpc_method="Route"}'), "p99")), "s"),
    ]),
    "hyper-tagger": ("HyPER / Tagger", [
        Panel("Tagging throughput", ((rate("hyper_tagger_instances_total"), "instances/s"),), "short"),
        Panel("Feature cache hit ratio", ((ratio(
            rate("hyper_tagger_cache_lookups_total", selector='{result="hit"}'),
            rate("hyper_tagger_cache_lookups_total")), "hit ratio"),), "percentunit"),
        Panel("Cache bypassed (Redis unreachable)", ((rate("hyper_tagger_cache_bypassed_total"), "bypassed/s"),),
              "short"),
        Panel("AI labels (Annotate)", ((rate("hyper_tagger_instances_annotated_total"), "pairs/s"),), "short"),
        Panel("vLLM tokens by kind", ((rate("hyper_tagger_llm_tokens_total", "kind"), "{{kind}}"),), "short"),
        Panel("vLLM replies that did not parse", ((rate("hyper_tagger_llm_unparsed_replies_total"),
                                                   "unparsed/s"),), "short"),
        Panel("Tag latency p50 / p99", (
            (quantile(0.5, GRPC_LATENCY, "grpc_method", selector='{grpc_service="hyper.v1.TaggerService"}'),
             "p50 {{grpc_method}}"),
            (quantile(0.99, GRPC_LATENCY, "grpc_method", selector='{grpc_service="hyper.v1.TaggerService"}'),
             "p99 {{grpc_method}}")), "s"),
    ]),
    "hyper-training": ("HyPER / Training", [
        Panel("Training runs recorded by state", (
            (f"sum by (state) (increase(hyper_ppm_runs_recorded_total[{SLOW_WINDOW}]))", "{{state}}"),), "short"),
        Panel("Run failure ratio", ((ratio(
            rate("hyper_ppm_runs_recorded_total", window=SLOW_WINDOW, selector='{state="failed"}'),
            rate("hyper_ppm_runs_recorded_total", window=SLOW_WINDOW)), "failed"),), "percentunit", "stat"),
        Panel("Runs recorded since start, by state", (("sum by (state) (hyper_ppm_runs_recorded_total)",
                                                       "{{state}}"),), "short", "stat"),
        Panel("PPM versions fitted", (("sum by (kind) (increase(hyper_ppm_models_fitted_total[1d]))",
                                       "{{kind}}"),), "short"),
        Panel("Latest PPM version", (("max by (model) (hyper_ppm_model_version)", "{{model}}"),), "short",
              "stat"),
    ]),
}


def _panel(panel: Panel, index: int) -> dict:
    width = 12
    return {
        "id": index + 1, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": width, "x": (index % 2) * width, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, (expr, legend) in enumerate(panel.exprs)],
    }


def dashboard(uid: str) -> dict:
    title, panels = DASHBOARDS[uid]
    return {
        "uid": uid, "title": title, "tags": ["hyper"], "editable": False, "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus"}]},
        "panels": [_panel(panel, i) for i, panel in enumerate(panels)],
    }


def expressions() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL) of every panel target."""
    return [(uid, panel.title, expr) for uid, (_, panels) in DASHBOARDS.items()
            for panel in panels for expr, _ in panel.exprs]


def render(uid: str) -> str:
    return json.dumps(dashboard(uid), indent=1) + "\n"


def write(directory: Path = CHART_DASHBOARDS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid in DASHBOARDS:
        path = directory / f"{uid}.json"
        path.write_text(render(uid))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write(Path(sys.argv[1]) if len(sys.argv) > 1 else CHART_DASHBOARDS):
        print(written)
