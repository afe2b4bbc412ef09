"""Optional gRPC TLS and ppm's run-recording token, on a real ppm server over loopback."""

import os
import subprocess
import sys

import grpc
import pytest

from harness.local import ppm_server
from hyper.api import serving
from hyper.api.clients import PPMClient
from hyper.v1 import ppm_pb2

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


@pytest.fixture(scope="module")
def mutual_tls_ppm(tmp_path_factory):
    """ppm accepting only clients that present a certificate signed by its CA."""
    directory = tmp_path_factory.mktemp("mtls")
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(openssl + ["-subj", "/CN=hyper-test-ca", "-keyout", str(ca_key), "-out", str(ca_cert)],
                   check=True, capture_output=True)
    key, request, cert = directory / "tls.key", directory / "tls.csr", directory / "tls.crt"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hyper-ppm",
                    "-keyout", str(key), "-out", str(request)], check=True, capture_output=True)
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = {"tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(ca_cert)}
    with ppm_server(directory, **tls, tls_client_auth=True) as settings:
        yield settings


def test_mutual_tls_refuses_clients_without_a_certificate_of_the_ca(mutual_tls_ppm):
    address = f"localhost:{mutual_tls_ppm.ppm_port}"
    assert serving.health_status(address, mutual_tls_ppm) == "SERVING"  # presents tls.crt
    anonymous = mutual_tls_ppm.model_copy(update={"tls_client_auth": False})  # verifies the server only
    assert serving.health_status(address, anonymous).startswith("UNREACHABLE")


def test_no_secret_reaches_a_log_line(tmp_path, hh_dataset):
    """A full run with every token set (right and wrong ones presented): no log holds a token."""
    from fastapi.testclient import TestClient

    from harness import faults
    from hyper_gateway.app import create_app

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
    assert set(logs) == {"tagger.log", "ppm.log", "router.log"} and all(logs.values())
    leaks = [(name, secret) for name, text in logs.items() for secret in [*secrets.values(), "wrong-token-ffff"]
             if secret in text]
    assert leaks == []
