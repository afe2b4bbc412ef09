"""Optional gRPC TLS and ppm's run-recording token, on a real ppm server over loopback."""

import os
import subprocess
import sys

import grpc
import pytest

from hyper import serving
from hyper.clients import PPMClient
from hyper.ppm.server import build
from hyper.v1 import ppm_pb2
from tests.conftest import local_settings

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
    settings = local_settings(directory / "home").model_copy(update={
        "tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(cert), "ppm_record_token": "t0ken",
        "ppm_metrics_port": 0})
    server = build(settings)
    server.start()
    yield settings
    server.grpc.stop(0)


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
