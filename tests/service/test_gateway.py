"""The REST gateway in front of real router and ppm processes."""

import os
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient

from harness.models import known_ppm
from hyper.api import proto_convert
from hyper.api.proto_convert import message_to_dict as as_json
from hyper.core.catalogue import FEATURE_NAMES
from hyper.method.performance_models import QuadraticForm
from hyper_gateway.app import create_app
from hyper_ppm.store import ModelRegistry

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def gateway(services):
    ppm = known_ppm(list(FEATURE_NAMES),
                    QuadraticForm(0.6, np.random.default_rng(5).normal(0, 1e-3, len(FEATURE_NAMES))))
    ModelRegistry(services.ppm_dir).save("gateway", ppm.to_json())
    return TestClient(create_app(services.model_copy(update={"gateway_token": "s3cret"})))


def route_body(instances, **budget) -> dict:
    """A RouteRequest as a REST client writes it: proto JSON with the proto's field names."""
    return {"dataset": {"inline": {"instances": [as_json(proto_convert.instance_to_proto(i)) for i in instances]}},
            "budget": budget, "strategy": "topk", "ppm_model": "gateway"}


AUTH = {"Authorization": "Bearer s3cret"}


def test_route_over_rest_is_persisted_and_can_be_read_back(gateway, hh_dataset):
    reply = gateway.post("/v1/route", json=route_body(hh_dataset.instances[:12], count=3), headers=AUTH)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["n_human"] == 3 and len(result["assignments"]) == 12
    again = gateway.get(f"/v1/routes/{result['route_id']}", headers=AUTH)
    assert again.status_code == 200 and again.json() == result


def test_a_route_deleted_over_rest_or_by_the_cli_is_gone(gateway, services, hh_dataset):
    made = [gateway.post("/v1/route", json=route_body(hh_dataset.instances[:12], count=3), headers=AUTH).json()
            for _ in range(2)]
    deleted = gateway.delete(f"/v1/routes/{made[0]['route_id']}", headers=AUTH)
    assert deleted.status_code == 204
    assert gateway.get(f"/v1/routes/{made[0]['route_id']}", headers=AUTH).status_code == 404
    assert gateway.delete(f"/v1/routes/{made[0]['route_id']}", headers=AUTH).status_code == 404
    cli = [sys.executable, "-m", "hyper.cli", "routes", "delete", made[1]["route_id"]]
    done = subprocess.run(cli, env={**os.environ, **services.to_env()}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and f"deleted route {made[1]['route_id']}" in done.stdout, done.stderr
    again = subprocess.run(cli, env={**os.environ, **services.to_env()}, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "NOT_FOUND" in again.stderr


def test_rest_errors_name_the_field_like_grpc(gateway, hh_dataset):
    bad = gateway.post("/v1/route", json=route_body(hh_dataset.instances[:4], fraction=1.5), headers=AUTH)
    assert bad.status_code == 400
    assert bad.json()["error"] == {"code": "INVALID_ARGUMENT",
                                   "message": "budget.fraction: Input should be less than or equal to 1"}
    typo = gateway.post("/v1/route", json={"budgett": {}}, headers=AUTH)
    assert typo.status_code == 400 and "budgett" in typo.json()["error"]["message"]
    missing = gateway.get("/v1/routes/" + "0" * 32, headers=AUTH)
    assert missing.status_code == 404
    assert gateway.get("/v1/routes/not-an-id", headers=AUTH).status_code == 400


def test_the_guaranteed_mode_over_rest_takes_a_target_instead_of_a_budget(gateway, hh_dataset):
    body = route_body(hh_dataset.instances[:6]) | {"strategy": "auto", "target_accuracy": 0.9, "risk": 0.1}
    del body["budget"]
    reply = gateway.post("/v1/route", json=body, headers=AUTH)
    assert reply.status_code == 404  # the guarantee is computed from an error model's history
    message = reply.json()["error"]["message"]
    assert "no error model named 'gateway.errors'" in message and "hyper train" in message
    both = gateway.post("/v1/route", json=body | {"budget": {"count": 2}}, headers=AUTH)
    assert both.status_code == 400 and "not both" in both.json()["error"]["message"]


def test_what_a_client_may_send_wrong_is_a_4xx_naming_it(gateway, hh_dataset):
    accented = gateway.get("/v1/runs", headers={"Authorization": "Bearer s3crét".encode()})
    assert accented.status_code == 401 and accented.json()["error"]["code"] == "UNAUTHENTICATED"  # the documented body
    route_id = gateway.post("/v1/route", json=route_body(hh_dataset.instances[:4], count=1),
                            headers=AUTH).json()["route_id"]
    for query, field in (("page_size=-1", "page_size"), ("page_size=100001", "page_size"),
                         ("page_token=%C2%B2", "page_token")):
        reply = gateway.get(f"/v1/routes/{route_id}?{query}", headers=AUTH)
        assert reply.status_code == 400 and field in reply.json()["error"]["message"], (query, reply.text)
    for sample in (-1, 1001):
        reply = gateway.get(f"/v1/routes/{route_id}/report?sample={sample}", headers=AUTH)
        assert reply.status_code == 400 and "sample" in reply.json()["error"]["message"]


def test_diagnose_over_rest(gateway):
    from harness.local import REPO

    body = {"dataset": {"ref": {"path": str(REPO / "data" / "llmbar-mtbench.jsonl.gz")}},
            "ai_source": "gpt-4", "judges": ["chatgpt"]}
    reply = gateway.post("/v1/diagnose", json=body, headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert reply.json()["n_pairs"] == 200 and reply.json()["verdict"]
    missing = gateway.post("/v1/diagnose", json={"dataset": body["dataset"]}, headers=AUTH)
    assert missing.status_code == 400 and "ai_source" in missing.json()["error"]["message"]


def test_the_gateway_wants_its_bearer_token_and_documents_itself(gateway):
    assert gateway.get("/v1/runs").status_code == 401
    assert gateway.get("/v1/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert gateway.get("/v1/runs", headers=AUTH).status_code == 200
    paths = gateway.get("/openapi.json").json()["paths"]
    assert {"/v1/route", "/v1/diagnose", "/v1/routes/{route_id}", "/v1/runs"} <= set(paths)
    schema = gateway.get("/openapi.json").json()["components"]["schemas"]
    assert {"strategy", "budget", "dataset", "require_skill"} <= set(schema["RouteRequest"]["properties"])
    assert {"warnings", "ppm_skill"} <= set(schema["RouteResult"]["properties"])


def test_the_gateway_process_serves_http(gateway_url):
    """The entry point users run (`hyper-gateway`), as a real process on a loopback port."""
    import urllib.request

    reply = urllib.request.urlopen(f"{gateway_url}/openapi.json", timeout=5)
    assert reply.status == 200 and b"/v1/route" in reply.read()


def test_the_gateway_reports_readiness_liveness_and_metrics(gateway, hh_dataset):
    assert gateway.get("/healthz").json() == {"router": "SERVING"}
    assert gateway.get("/livez").status_code == 200
    gateway.post("/v1/route", json=route_body(hh_dataset.instances[:10], fraction=0.3), headers=AUTH)
    metrics = gateway.get("/metrics/").text
    assert 'hyper_gateway_requests_total{code="200",method="POST",route="/v1/route"}' in metrics
    assert "hyper_gateway_request_duration_seconds_bucket" in metrics


def test_a_route_is_read_over_rest_a_page_at_a_time(gateway, hh_dataset):
    body = route_body(hh_dataset.instances[:12], count=3) | {"page_size": 5}
    first = gateway.post("/v1/route", json=body, headers=AUTH).json()
    assert len(first["assignments"]) == 5 and first["next_page_token"]
    listed, token = list(first["assignments"]), first["next_page_token"]
    while token:
        page = gateway.get(f"/v1/routes/{first['route_id']}", params={"page_token": token, "page_size": 5},
                           headers=AUTH).json()
        listed, token = listed + page["assignments"], page["next_page_token"]
    assert [a["id"] for a in listed] == [i.id for i in hh_dataset.instances[:12]]
    assert sum(a["route"] == "human" for a in listed) == 3
