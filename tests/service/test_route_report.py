"""A route explained (`Report`, `hyper report`, the gateway's page) against the session's real
services, and the page and the gateway's /docs rendered by a real headless Chromium with no
network: nothing on them may need a CDN."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import grpc
import numpy as np
import pytest

from harness.local import REPO, free_ports
from harness.models import known_ppm
from harness.polling import server_process
from hyper.api import proto_convert
from hyper.api.clients import RouterClient
from hyper.core.catalogue import FEATURE_NAMES
from hyper.data import dataset_files
from hyper.data.ingest import plain_record
from hyper.labelling.hybrid_dataset import write_rows
from hyper.method.performance_models import QuadraticForm
from hyper.v1 import common_pb2, router_pb2
from hyper_ppm.store import ModelRegistry

pytestmark = pytest.mark.service

PANDALM = REPO / "data" / "pandalm-testset.jsonl.gz"


@pytest.fixture(scope="module")
def routed(services, channels, tmp_path_factory):
    """60 PandaLM pairs routed at 25% with a PPM of known weights, read from a file."""
    path = tmp_path_factory.mktemp("report") / "pairs.jsonl"
    write_rows([plain_record(i) for i in dataset_files.read_dataset(PANDALM).instances[:60]], path, "jsonl")
    coef = np.random.default_rng(5).normal(0, 1e-3, len(FEATURE_NAMES))
    ModelRegistry(services.ppm_dir).save("report", known_ppm(list(FEATURE_NAMES), QuadraticForm(0.7, coef),
                                                             target="label_accuracy").to_json())
    request = router_pb2.RouteRequest(
        dataset=common_pb2.Dataset(ref=common_pb2.DatasetRef(path=str(path), format="plain")),
        budget=router_pb2.Budget(fraction=0.25), strategy="topk", ppm_model="report", ai_source="gpt-3.5-turbo",
        judges=["pandalm-7b"])
    return RouterClient(channels["router"]).route(request)


def test_the_report_explains_the_route_on_one_self_contained_page(channels, routed):
    page = RouterClient(channels["router"]).report(routed.route_id, sample_size=5)
    assert routed.route_id in page and "cross-validated Spearman 0.80 [0.60, 0.90]" in page
    assert "Routed again" not in page  # the route reproduces: its prediction and the curve's agree
    assert page.count("<svg") == 2  # the budget curve and the judge's confidence by group
    assert "Most over-represented" in page and "routed to humans (15)" in page
    human = [a for a in sorted(routed.assignments, key=lambda a: -a.gain) if a.route == "human"][:5]
    assert all(a.id in page for a in human)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # loads nothing


def test_a_route_of_inline_pairs_cannot_be_reported_again(channels, routed):
    router = RouterClient(channels["router"])
    instances = dataset_files.read_dataset(PANDALM).instances[:8]
    inline = router.route(router_pb2.RouteRequest(
        dataset=common_pb2.Dataset(inline=common_pb2.InstanceList(instances=[proto_convert.instance_to_proto(i)
                                                                             for i in instances])),
        budget=router_pb2.Budget(count=2), ppm_model="report"))
    with pytest.raises(grpc.RpcError) as raised:
        router.report(inline.route_id)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("route_id: the route was given its pairs inline")


@contextlib.contextmanager
def running_gateway(settings):
    """The gateway's own entry point as a process on a free loopback port."""
    port = free_ports(1)[0]
    env = {**os.environ, **settings.to_env(), "HYPER_GATEWAY_PORT": str(port)}
    with server_process([sys.executable, "-m", "hyper_gateway.server"], env, f"http://127.0.0.1:{port}/livez",
                        timeout=60):
        yield f"http://127.0.0.1:{port}"


def chromium_screenshot(url: str, png, tmp_path) -> None:
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: `make test` installs Debian's package"
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,1600",
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost",  # no way out
         "--virtual-time-budget=5000", f"--screenshot={png}", url],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and png.stat().st_size > 10_000, done.stderr[-2000:]


def test_the_report_and_the_gateway_docs_render_in_a_real_browser_offline(services, routed, tmp_path):
    page = tmp_path / "report.html"
    made = subprocess.run([sys.executable, "-m", "hyper.cli", "report", routed.route_id, "--out", str(page)],
                          env={**os.environ, **services.to_env()}, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    chromium_screenshot(page.as_uri(), tmp_path / "report.png", tmp_path)
    with running_gateway(services) as base:
        chromium_screenshot(f"{base}/docs", tmp_path / "docs.png", tmp_path)
        dump = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                               f"--user-data-dir={tmp_path / 'dump-profile'}", "--virtual-time-budget=5000",
                               "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost",
                               "--dump-dom", f"{base}/docs"], capture_output=True, text=True, timeout=120)
        assert 'class="swagger-ui"' in dump.stdout and "/v1/route" in dump.stdout  # rendered, not blank
        with urllib.request.urlopen(f"{base}/v1/routes/{routed.route_id}/report", timeout=300) as served:
            assert served.headers["content-type"].startswith("text/html")
            served_page = served.read().decode()
        assert routed.route_id in served_page and "<svg" in served_page
    out = REPO / "out" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "report.png", out / "route-report.png")
    shutil.copy(tmp_path / "docs.png", out / "gateway-docs.png")
