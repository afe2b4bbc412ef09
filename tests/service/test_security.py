"""Optional gRPC TLS, the access policy and ppm's run-recording token, on real servers over
loopback."""

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import yaml
from fastapi.testclient import TestClient

from harness import faults
from harness.local import ppm_server
from hyper.api import serving
from hyper.api.access import token_digest
from hyper.api.clients import PPMClient, RouterClient, TaggerClient
from hyper.infra.local_processes import LocalProcesses
from hyper.v1 import ppm_pb2
from hyper_gateway.app import create_app

pytestmark = pytest.mark.service

RUN = ppm_pb2.Run(run_id="r1", experiment="secure", state="failed", failure_reason="test")


@pytest.fixture(scope="module")
def secure_ppm(tmp_path_factory):
    """ppm serving TLS only, recording runs only for holders of the token."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=hyper-ppm", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls = {"tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(cert)}
    with ppm_server(directory, **tls, ppm_record_token="t0ken") as settings:
        yield settings


def test_a_tls_server_answers_tls_clients_only(secure_ppm):
    address = f"localhost:{secure_ppm.ppm_port}"
    assert serving.health_status(address, secure_ppm) == "SERVING"
    plain = secure_ppm.model_copy(update={"tls_ca": ""})
    assert serving.health_status(address, plain).startswith("UNREACHABLE")


def test_hyper_health_is_the_probe_and_speaks_tls(secure_ppm):
    env = os.environ | {"HYPER_TLS_CA": secure_ppm.tls_ca}
    probe = [sys.executable, "-m", "hyper.cli", "health", f"localhost:{secure_ppm.ppm_port}"]
    ok = subprocess.run(probe, env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "SERVING" in ok.stdout
    down = subprocess.run(probe[:-1] + ["localhost:1"], env=env, capture_output=True, text=True)
    assert down.returncode == 1 and "UNREACHABLE" in down.stdout


def test_only_holders_of_the_record_token_record_runs(secure_ppm):
    channel = serving.channel(f"localhost:{secure_ppm.ppm_port}", secure_ppm)
    for token in ("", "wrong"):
        with pytest.raises(grpc.RpcError) as error:
            PPMClient(channel, record_token=token).record_run(RUN)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "HYPER_PPM_RECORD_TOKEN" in error.value.details()
    assert PPMClient(channel, record_token="t0ken").record_run(RUN)
    assert [r.run_id for r in PPMClient(channel).list_runs("secure")] == ["r1"]  # reading is open
    not_a_number = ppm_pb2.Run(run_id="r2", experiment="secure", state="failed", failure_reason="t",
                               eval_score=float("nan"))
    with pytest.raises(grpc.RpcError) as refused:  # was INTERNAL: the fuzzer found it
        PPMClient(channel, record_token="t0ken").record_run(not_a_number)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert serving.violations_in_status(refused.value)[0][0] == "run.eval_score"


def signed_certificate(directory, ca: tuple, name: str, alternative_names: str) -> tuple:
    """(certificate, key) for `name`, signed by the CA (certificate, key)."""
    key, request, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                    "-keyout", str(key), "-out", str(request)], check=True, capture_output=True)
    extensions = directory / f"{name}.ext"
    extensions.write_text(f"subjectAltName={alternative_names}\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                    "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def mutual_tls_ppm(tmp_path_factory):
    """ppm accepting only clients that present a certificate signed by its CA; its access
    policy lets the router's certificate read models and nothing else."""
    directory = tmp_path_factory.mktemp("mtls")
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(openssl + ["-subj", "/CN=hyper-test-ca", "-keyout", str(ca_key), "-out", str(ca_cert)],
                   check=True, capture_output=True)
    cert, key = signed_certificate(directory, (ca_cert, ca_key), "hyper-ppm", "DNS:localhost,IP:127.0.0.1")
    policy = directory / "access.json"
    policy.write_text(json.dumps({"callers": [
        {"name": "router", "certificate": "hyper-router", "permissions": ["read_models"]}]}))
    tls = {"tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(ca_cert)}
    with ppm_server(directory, **tls, tls_client_auth=True, access_policy=str(policy)) as settings:
        router_cert, router_key = signed_certificate(directory, (ca_cert, ca_key), "hyper-router",
                                                     "DNS:hyper-router")
        yield settings, settings.model_copy(update={"tls_cert": str(router_cert), "tls_key": str(router_key)})


def test_mutual_tls_refuses_clients_without_a_certificate_of_the_ca(mutual_tls_ppm):
    server, _ = mutual_tls_ppm
    address = f"localhost:{server.ppm_port}"
    assert serving.health_status(address, server) == "SERVING"  # presents the ppm's own certificate
    anonymous = server.model_copy(update={"tls_client_auth": False})  # verifies the server only
    assert serving.health_status(address, anonymous).startswith("UNREACHABLE")


def test_a_client_certificate_is_a_caller_identity_with_the_permissions_the_policy_gives_it(mutual_tls_ppm):
    server, router = mutual_tls_ppm
    as_router = PPMClient(serving.channel(f"localhost:{server.ppm_port}", router))
    assert as_router.list_models() == []
    with pytest.raises(grpc.RpcError) as denied:
        as_router.promote("default", "v1")
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "router may not call Promote: it needs the 'administer_models' permission" in denied.value.details()
    as_ppm = PPMClient(serving.channel(f"localhost:{server.ppm_port}", server))  # a valid certificate, not named
    with pytest.raises(grpc.RpcError) as unknown:
        as_ppm.list_models()
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED


def chart_secrets(values: str) -> list[dict]:
    """The Secrets `helm template` of the chart writes with these values."""
    chart = Path(__file__).resolve().parents[2] / "helm" / "hyper"
    rendered = subprocess.run([shutil.which("helm") or "helm", "template", "hyper", str(chart), "--set", values],
                              capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Secret"]


def chart_certificates(directory: Path) -> dict[str, dict[str, str]]:
    """The per-component certificates the Helm chart generates (tls.generate), as PEM files by
    component."""
    files: dict[str, dict[str, str]] = {}
    secrets = chart_secrets("tls.enabled=true,tls.perComponent=true,tls.generate=true,tls.mutual=true")
    for secret in (d for d in secrets if d.get("type") == "kubernetes.io/tls"):
        component = secret["metadata"]["name"].removeprefix("hyper-tls-")
        for key, value in secret["data"].items():
            path = directory / f"{component}-{key}"
            path.write_bytes(base64.b64decode(value))
            files.setdefault(component, {})[key] = str(path)
    return files


def test_the_chart_s_certificates_are_each_component_s_identity(tmp_path):
    """ppm serving with the certificate the chart made for it, mutual TLS, a policy naming the
    router's certificate: the router's certificate may read models and not promote; the
    gateway's, valid but not named, is unknown."""
    made = chart_certificates(tmp_path)
    policy = tmp_path / "access.json"
    policy.write_text(json.dumps({"callers": [
        {"name": "router", "certificate": "hyper-router", "permissions": ["read_models"]}]}))

    def presenting(component: str) -> dict:
        return {"tls_cert": made[component]["tls.crt"], "tls_key": made[component]["tls.key"],
                "tls_ca": made[component]["ca.crt"]}

    with ppm_server(tmp_path, **presenting("ppm"), tls_client_auth=True, access_policy=str(policy)) as server:
        address = f"localhost:{server.ppm_port}"
        as_router = PPMClient(serving.channel(address, server.model_copy(update=presenting("router"))))
        assert as_router.list_models() == []
        with pytest.raises(grpc.RpcError) as denied:
            as_router.promote("default", "v1")
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        as_gateway = PPMClient(serving.channel(address, server.model_copy(update=presenting("gateway"))))
        with pytest.raises(grpc.RpcError) as unknown:
            as_gateway.list_models()
        assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_chart_s_generated_policy_runs_the_system_with_least_privilege(tmp_path, hh_dataset):
    """The access policy and tokens the chart writes (access.generate), on the whole system as
    processes: the services present the router's token to each other, a Route made with the
    gateway's token runs through tagger and ppm, and the gateway's token may not tag."""
    [access] = [d for d in chart_secrets("access.generate=true") if d["metadata"]["name"] == "hyper-access"]
    policy = tmp_path / "policy.json"
    policy.write_text(access["stringData"]["policy.json"])
    tokens = {name: access["stringData"][f"{name}-token"] for name in ("router", "gateway")}
    with faults.System.running(tmp_path / "system", access_policy=str(policy), caller_token=tokens["router"]) as system:
        as_gateway = system.settings.model_copy(update={"caller_token": tokens["gateway"]})
        routed = RouterClient(serving.channel(system.settings.address("router"), as_gateway)).route(
            faults.route_request(hh_dataset.instances[:40]))
        assert routed.n_instances == 40
        with pytest.raises(grpc.RpcError) as denied:
            TaggerClient(serving.channel(system.settings.address("tagger"), as_gateway)).feature_set_version()
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED and "gateway may not" in denied.value.details()


def test_under_a_policy_the_services_call_each_other_with_their_tokens_and_a_reader_cannot_route(
        tmp_path, hh_dataset):
    """The whole system as processes: each presents the system's token to its peers (a Route
    runs through tagger and ppm); a caller with only read_routes reads routes and may not route,
    and through a gateway that forwards users' tokens may read and not delete."""
    policy = tmp_path / "access.json"
    policy.write_text(json.dumps({"callers": [
        {"name": "system", "token_sha256": token_digest("sys-4c1e"), "permissions": ["*"]},
        {"name": "dashboard", "token_sha256": token_digest("read-9a0b"), "permissions": ["read_routes"]}]}))
    with faults.System.running(tmp_path / "system", access_policy=str(policy), caller_token="sys-4c1e") as system:
        routed = RouterClient(system.channel("router")).route(faults.route_request(hh_dataset.instances[:40]))
        reader = system.settings.model_copy(update={"caller_token": "read-9a0b"})
        as_reader = RouterClient(serving.channel(system.settings.address("router"), reader))
        assert as_reader.get_route(routed.route_id).route_id == routed.route_id
        with pytest.raises(grpc.RpcError) as denied:
            as_reader.route(faults.route_request(hh_dataset.instances[:40]))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        gateway = TestClient(create_app(system.settings.model_copy(
            update={"gateway_forward_tokens": True, "caller_token": ""})))
        route_path = f"/v1/routes/{routed.route_id}"
        # through the gateway each user acts with their own permissions
        assert gateway.get(route_path, headers=bearer("read-9a0b")).json()["route_id"] == routed.route_id
        forbidden = gateway.delete(route_path, headers=bearer("read-9a0b"))
        assert forbidden.status_code == 403 and "dashboard may not call DeleteRoute" in forbidden.text
        assert [gateway.get(route_path, headers=headers).status_code
                for headers in ({}, bearer("unknown-1234"), {"Authorization": "Basic eDp5"})] == [401, 401, 401]
        assert gateway.delete(route_path, headers=bearer("sys-4c1e")).status_code == 204
        anonymous = system.settings.model_copy(update={"caller_token": ""})
        with pytest.raises(grpc.RpcError) as refused:
            PPMClient(serving.channel(system.settings.address("ppm"), anonymous)).list_models()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert serving.health_status(system.settings.address("ppm"), anonymous) == "SERVING"  # probes stay open


def test_hyper_up_admits_only_holders_of_the_token_its_user_alone_can_read(services, channels, tmp_path):
    """`hyper up` without a policy: its clients (same home) call as before; another user's
    client, which cannot read the token, is refused everything but health."""
    token_file = services.home.resolve() / "access" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert PPMClient(channels["ppm"]).list_models() is not None  # the session's own clients
    stranger = services.model_copy(update={"home": tmp_path})  # no token to read
    with serving.channel(services.address("ppm"), stranger) as channel, pytest.raises(grpc.RpcError) as refused:
        PPMClient(channel).list_runs("")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED and "access/token" in refused.value.details()
    assert serving.health_status(services.address("ppm"), stranger) == "SERVING"
    assert LocalProcesses(services.model_copy(update={"local_access": "open"})).access_env() == {}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_secret_reaches_a_log_line(tmp_path, hh_dataset):
    """A full run with every token set (right and wrong ones presented): no log holds a token."""
    secrets = {"ppm_record_token": "rec-7f3a9c2e51", "gateway_token": "gw-5b8d1e0a44",
               "judge_api_key": "sk-judge-0c9e2f7a13"}
    with faults.System.running(tmp_path / "system", **secrets) as system:
        channel = system.channel("ppm")
        assert PPMClient(channel, record_token=secrets["ppm_record_token"]).record_run(RUN)
        with pytest.raises(grpc.RpcError):
            PPMClient(channel, record_token="wrong-token-ffff").record_run(RUN)
        gateway = TestClient(create_app(system.settings))
        assert gateway.get("/v1/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert gateway.get("/v1/runs", headers={"Authorization": f"Bearer {secrets['gateway_token']}"}
                           ).status_code == 200
        faults.router_restart(system, hh_dataset.instances)  # a Route, a kill, a restart: start-up lines logged twice
        logs = {p.name: p.read_text() for p in (system.settings.home / "logs").glob("*.log")}
        local = (system.settings.home / "access" / "token").read_text()  # `hyper up`'s own
    assert set(logs) == {"tagger.log", "ppm.log", "router.log"} and all(logs.values())
    leaks = [(name, secret) for name, text in logs.items()
             for secret in [*secrets.values(), "wrong-token-ffff", local] if secret in text]
    assert leaks == []


def test_the_servicer_sees_the_caller_the_policy_named_which_quotas_count_against(tmp_path):
    from harness.local import local_settings
    from hyper.api.access import CALLER
    from hyper.v1 import router_pb2, router_pb2_grpc

    class Recording(router_pb2_grpc.RouterServiceServicer):
        callers: list[str] = []

        def GetRoute(self, request, context):
            self.callers.append(CALLER.get())
            return router_pb2.RouteResponse()

    policy = tmp_path / "access.json"
    policy.write_text(json.dumps({"callers": [
        {"name": "dashboard", "token_sha256": token_digest("read-9a0b"), "permissions": ["read_routes"]}]}))
    settings = local_settings(tmp_path).model_copy(update={"access_policy": str(policy), "router_metrics_port": 0,
                                                           "caller_token": "read-9a0b"})
    server = serving.Server(settings, "router", [(router_pb2_grpc.add_RouterServiceServicer_to_server, Recording(),
                                                  "hyper.v1.RouterService")])
    server.start()
    try:
        RouterClient(serving.channel(settings.address("router"), settings)).get_route("0" * 32)
    finally:
        server.grpc.stop(0)
    assert Recording.callers == ["dashboard"]
