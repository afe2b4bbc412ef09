"""Metrics and dashboards against real tools: each service's /metrics passes
`promtool check metrics`, every dashboard expression passes `promtool check rules`, and a real
Prometheus (Debian's package) on loopback scrapes the running services and answers every
dashboard expression, with data for the ones the test's traffic exercised."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
import urllib.request

import numpy as np
import pytest
import requests
import yaml

from harness.local import free_ports
from harness.models import known_ppm
from harness.polling import wait_for
from hyper.api import proto_convert
from hyper.api.clients import TaggerClient
from hyper.api.proto_convert import message_to_dict as as_json
from hyper.core.catalogue import FEATURE_NAMES
from hyper.infra.dashboards import expressions
from hyper.method.performance_models import QuadraticForm
from hyper_ppm.store import ModelRegistry

pytestmark = [pytest.mark.prometheus, pytest.mark.service]


def tool(name: str) -> str:
    binary = shutil.which(name)
    assert binary, f"{name} is missing: `make test` installs Debian's prometheus package"
    return binary


def targets(services, gateway_url: str) -> dict[str, str]:
    """Prometheus job -> host:port of its /metrics."""
    jobs = {f"hyper-{name}": f"127.0.0.1:{getattr(services, f'{name}_metrics_port')}"
            for name in ("tagger", "ppm", "router")}
    return jobs | {"hyper-gateway": urllib.parse.urlsplit(gateway_url).netloc}


def metrics_path(job: str) -> str:
    return "/metrics/" if job == "hyper-gateway" else "/metrics"


@pytest.fixture(scope="module")
def traffic(services, gateway_url, hh_dataset, channels):
    """What a user does: Route over REST (router -> tagger, ppm), a bad request, a Tag."""
    ppm = known_ppm(list(FEATURE_NAMES),
                    QuadraticForm(0.6, np.random.default_rng(7).normal(0, 1e-3, len(FEATURE_NAMES))))
    ModelRegistry(services.ppm_dir).save("monitoring", ppm.to_json())

    def generate() -> None:
        instances = [as_json(proto_convert.instance_to_proto(i)) for i in hh_dataset.instances[:30]]
        body = {"dataset": {"inline": {"instances": instances}}, "budget": {"fraction": 0.3},
                "strategy": "topk", "ppm_model": "monitoring"}
        assert requests.post(f"{gateway_url}/v1/route", json=body, timeout=120).status_code == 200
        # a budget the body's schema accepts but the router refuses: more than the 30 instances
        bad = dict(body, budget={"count": 31})
        assert requests.post(f"{gateway_url}/v1/route", json=bad, timeout=60).status_code == 400
        TaggerClient(channels["tagger"]).tag(hh_dataset.instances[30:40])

    return generate


@pytest.fixture(scope="module")
def prometheus(services, gateway_url, tmp_path_factory):
    directory = tmp_path_factory.mktemp("prometheus")
    [port] = free_ports(1)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": job, "metrics_path": metrics_path(job),
                                  "static_configs": [{"targets": [address]}]}
                                 for job, address in targets(services, gateway_url).items()]}
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    subprocess.run([tool("promtool"), "check", "config", str(directory / "prometheus.yml")],
                   check=True, capture_output=True)
    with open(directory / "prometheus.log", "wb") as log:  # the child keeps its own handle
        process = subprocess.Popen([tool("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={directory / 'data'}",
                                    f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (directory / "prometheus.log").read_text()[-2000:]
        try:
            return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(ready, "prometheus to start")
    yield url
    process.terminate()
    process.wait(timeout=20)


def query(url: str, expr: str) -> list[dict]:
    reply = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert reply["status"] == "success", (expr, reply)
    return reply["data"]["result"]


def test_every_services_metrics_pass_promtool(services, gateway_url, traffic):
    traffic()
    for job, address in targets(services, gateway_url).items():
        text = urllib.request.urlopen(f"http://{address}{metrics_path(job)}", timeout=5).read()
        check = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True)
        assert check.returncode == 0 and not check.stdout.strip(), (job, check.stdout + check.stderr)


def test_every_dashboard_expression_is_valid_promql(tmp_path):
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:{uid.replace('-', '_')}:{i}", "expr": expr}
        for i, (uid, _, expr) in enumerate(expressions())]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    check = subprocess.run([tool("promtool"), "check", "rules", str(tmp_path / "rules.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(expressions())} rules found" in check.stdout


def test_prometheus_scrapes_the_services_and_answers_the_dashboards(prometheus, services, gateway_url, traffic):
    jobs = set(targets(services, gateway_url))
    wait_for(lambda: {r["metric"]["job"] for r in query(prometheus, "up == 1")} == jobs, "every target up")
    traffic()  # after the first scrape, so that the rates see the counters move
    wait_for(lambda: query(prometheus, 'sum(rate(hyper_router_routes_total[5m])) > 0'), "a Route rate")

    expected = {("hyper-services", "gRPC requests by method"), ("hyper-services", "gRPC latency p50 / p99"),
                ("hyper-services", "gRPC errors by code"), ("hyper-services", "Queue depth (RPCs in flight)"),
                ("hyper-services", "REST gateway requests by route and code"),
                ("hyper-routing", "Route calls by strategy"), ("hyper-routing", "Instances routed, human vs AI"),
                ("hyper-routing", "Human share of routed instances"),
                ("hyper-routing", "Budget spent (mean share of the budget)"),
                ("hyper-routing", "Predicted eval score of routes (median, p10)"),
                ("hyper-routing", "Route latency p50 / p99"),
                ("hyper-tagger", "Tagging throughput"), ("hyper-tagger", "Feature cache hit ratio"),
                ("hyper-tagger", "Tag latency p50 / p99")}
    answered = {}

    def all_expected_answered() -> bool:  # a scrape of a busy 2-core machine can time out
        answered.update({(uid, title): query(prometheus, expr) for uid, title, expr in expressions()})
        return expected <= {key for key, result in answered.items() if result}

    wait_for(all_expected_answered, "data for the panels the traffic exercised")
    [share] = answered[("hyper-routing", "Human share of routed instances")]
    assert 0.25 <= float(share["value"][1]) <= 0.35  # the Routes asked for 30% human
    codes = {r["metric"]["grpc_code"] for r in answered[("hyper-services", "gRPC errors by code")]}
    assert "INVALID_ARGUMENT" in codes
