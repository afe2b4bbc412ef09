"""A real tagger process killed (SIGKILL) in the middle of a large Tag request: the chunks it
committed before dying are cache hits for the restarted process, which computes only the rest."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

from harness.local import free_ports
from harness.polling import wait_for
from hyper.api import proto_convert, serving
from hyper.core.settings import Settings
from hyper.v1 import tagger_pb2, tagger_pb2_grpc

pytestmark = pytest.mark.service

CHUNK = 32
PAIRS = 10 * CHUNK


def start_tagger(settings: Settings, log_path: Path) -> subprocess.Popen:
    """The tagger's own entry point (the container command), as `hyper up` starts it."""
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "hyper_tagger.server"],
                                   env=dict(os.environ, **settings.to_env(), PYTHONUNBUFFERED="1"),
                                   stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def serving_now() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the tagger exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        return serving.health_status(settings.address("tagger"), settings) == "SERVING"

    wait_for(serving_now, "the tagger to serve", timeout=180)
    return process


def log_entries(log_path: Path, message: str) -> list[dict]:
    lines = (json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{"))
    return [entry for entry in lines if entry["msg"] == message]


def committed_chunks(log_path: Path) -> list[dict]:
    return log_entries(log_path, "tagging chunk committed")


def assert_exits_cleanly(process: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    """The tagger exits 0 in time; the end of its log is in the failure when it does not."""
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, f"exit {code} {timeout} s after SIGTERM: {log_path.read_text()[-4000:]}"


def tag(settings: Settings, request: tagger_pb2.TagRequest) -> tagger_pb2.TagResponse:
    with serving.channel(settings.address("tagger"), settings) as channel:
        return tagger_pb2_grpc.TaggerServiceStub(channel).Tag(request, timeout=600)


def tag_expecting_failure(settings: Settings, request: tagger_pb2.TagRequest, outcome: dict) -> None:
    try:
        tag(settings, request)
        outcome["code"] = "OK"
    except grpc.RpcError as error:
        outcome["code"] = error.code().name


@pytest.fixture
def settings(tmp_path):
    tagger_port, metrics_port = free_ports(2)
    return Settings(home=tmp_path / "home", redis_url="", tagger_port=tagger_port,
                    tagger_metrics_port=metrics_port, tagging_chunk_size=CHUNK)


def test_a_killed_tagger_resumes_from_its_last_committed_chunk(settings, tmp_path, hh_dataset):
    request = tagger_pb2.TagRequest(
        instances=[proto_convert.instance_to_proto(i) for i in hh_dataset.instances[:PAIRS]])
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    process, outcome = start_tagger(settings, first_log), {}
    try:
        caller = threading.Thread(target=tag_expecting_failure, args=(settings, request, outcome))
        caller.start()
        wait_for(lambda: len(committed_chunks(first_log)) >= 2, "two committed chunks", timeout=300)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        caller.join(60)
    finally:
        process.kill()
    assert outcome["code"] == "UNAVAILABLE", outcome
    seen_committed = committed_chunks(first_log)[-1]["done"]
    assert seen_committed < PAIRS, "the request finished before the kill: nothing to resume"

    process = start_tagger(settings, second_log)
    try:
        response = tag(settings, request)
        process.terminate()
        assert_exits_cleanly(process, second_log)
    finally:
        process.kill()
    # Whole chunks only, at least those the log had reported before the kill.
    assert response.cache_hits % CHUNK == 0 and seen_committed <= response.cache_hits < PAIRS
    assert response.cache_hits + response.cache_misses == PAIRS
    resumed = committed_chunks(second_log)
    assert [entry["done"] for entry in resumed] == list(range(CHUNK, response.cache_misses, CHUNK)) + [
        response.cache_misses]
    assert all(entry["total"] == response.cache_misses and entry["pairs_per_second"] > 0 for entry in resumed)
    assert len(response.features.instance_ids) == PAIRS
    (described,) = log_entries(second_log, "feature set")  # what the version's hash stands for
    assert described["version"] == response.features.feature_set_version and described["sentence_model"]


def stopped(log_path: Path) -> list[dict]:
    return log_entries(log_path, "tagging stopped: the caller is gone")


def test_a_tag_whose_caller_gave_up_stops_at_the_next_chunk_and_keeps_what_it_committed(settings, tmp_path,
                                                                                         hh_dataset):
    """A deadline passed mid-request: the tagger stops computing for nobody (before, it went on to
    the end and held a SIGTERM'd process until then); the chunks it committed are cache hits."""
    request = tagger_pb2.TagRequest(
        instances=[proto_convert.instance_to_proto(i) for i in hh_dataset.instances[:PAIRS]])
    log_path = tmp_path / "tagger.log"
    process = start_tagger(settings, log_path)
    try:
        with serving.channel(settings.address("tagger"), settings) as channel:
            stub = tagger_pb2_grpc.TaggerServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Tag(request, timeout=2)
            assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            wait_for(lambda: stopped(log_path), "the tagger to stop the abandoned request", timeout=60)
            (entry,) = stopped(log_path)
            assert 0 < entry["done"] < PAIRS and entry["done"] % CHUNK == 0
            missing = stub.MissingKeys(tagger_pb2.KeysRequest(
                keys=[i.content_key() for i in hh_dataset.instances[:PAIRS]]), timeout=30)
        assert len(missing.positions) == PAIRS - entry["done"]
        process.terminate()
        assert_exits_cleanly(process, log_path, timeout=15)
    finally:
        process.kill()
