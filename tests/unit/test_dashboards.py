"""Grafana dashboards: generated from hyper.infra.dashboards, committed in the chart, provisioned
as ConfigMaps the Grafana sidecar picks up. Their PromQL is checked by promtool and answered
by a real Prometheus in tests/monitoring."""

import json

from hyper.infra.dashboards import CHART_DASHBOARDS, DASHBOARDS, render


def test_the_committed_dashboards_are_the_generated_ones():
    committed = {p.stem: p.read_text() for p in CHART_DASHBOARDS.glob("*.json")}
    assert committed == {uid: render(uid) for uid in DASHBOARDS}, \
        "regenerate with: python -m hyper.infra.dashboards"


def test_every_panel_queries_prometheus_through_the_datasource_variable():
    for uid in DASHBOARDS:
        board = json.loads(render(uid))
        assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), uid
        for panel in board["panels"]:
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


