"""`hyper tag --backend kubernetes` against the real v1.20 API server (tests/k8s/conftest.py)
with the test node agent running the shard pods: the Job's pods tag every shard into the
release's Redis, and a tagger reading that Redis then finds every pair cached.

v1.20 predates Indexed Jobs: the server drops `completionMode`, the pods see an empty
JOB_COMPLETION_INDEX (the downward API on an annotation the controller never sets) and claim
shards from the run directory on the state volume. That fallback is what runs here; the
Indexed path (one shard per index) is not exercised by this server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from harness.local import HH_DATA, free_ports
from harness.polling import wait_for
from hyper.api import proto_convert, serving
from hyper.core.settings import Settings
from hyper.data import dataset_files
from hyper.v1 import tagger_pb2, tagger_pb2_grpc
from hyper.workflows.training_loop import write_plain_jsonl
from tests.k8s.conftest import NAMESPACE, VOLUME, start_node

pytestmark = [pytest.mark.k8s, pytest.mark.redis]


@pytest.fixture(scope="module")
def release_redis(tmp_path_factory):
    """The release's Redis, played by a real redis-server on a loopback TCP port: the pods'
    /tmp is an emptyDir, so a unix socket under the test's /tmp would be out of their sight."""
    import redis

    [port] = free_ports(1)
    process = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.ConnectionError:
            return False

    wait_for(answers, "redis-server", timeout=20)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def tag_node(cluster, installed, release_redis, tmp_path_factory):
    """The node for the tagging Job's pods, with the release's state claim; the release's
    Secret points its redis-url at the test's Redis (in a cluster: the chart's StatefulSet)."""
    cluster.kubectl("patch", "secret", "hyper-secrets", "-n", NAMESPACE, "--type", "merge", "-p",
                    json.dumps({"stringData": {"redis-url": release_redis}}))
    agent = start_node(cluster, "app.kubernetes.io/name=tagger-job", tmp_path_factory)
    yield agent
    agent.stop()


def dataset_on_volume(state: Path, name: str, rows: slice) -> tuple[Path, list]:
    """A slice of the bundled HH-RLHF test set, copied onto the state volume as a user would."""
    instances = dataset_files.read_dataset(HH_DATA).instances[rows]
    path = state / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_plain_jsonl(path, instances)
    return path, instances


def hyper_tag(cluster, path: Path, *args: str, lease_seconds: float = 60) -> subprocess.Popen:
    env = os.environ | {"KUBECONFIG": str(cluster.kubeconfig), "HYPER_TAG_JOB_LEASE_SECONDS": str(lease_seconds)}
    return subprocess.Popen([sys.executable, "-m", "hyper.cli", "tag", str(path), "--backend", "kubernetes",
                             "--namespace", NAMESPACE, "--path-in-cluster", f"{VOLUME}/data/{path.name}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finished(command: subprocess.Popen, node, timeout: float = 600) -> str:
    """The CLI's output once it returns; it must succeed (the pods' logs come with a failure)."""
    output, _ = command.communicate(timeout=timeout)
    logs = {p.name: p.read_text()[-1500:] for p in node.workdir.glob("*.log")}
    assert command.returncode == 0, output + json.dumps(logs, indent=1)
    return output


def done_records(state: Path, job: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((state / "tag-runs" / job).glob("shard-*.done"))]


def pod_phases(cluster, job: str) -> list[str]:
    pods = client.CoreV1Api(cluster.api_client()).list_namespaced_pod(NAMESPACE, label_selector=f"job-name={job}")
    return sorted(p.status.phase for p in pods.items)


def cache_lookups(redis_url: str, instances: list, tmp_path: Path) -> tuple[int, int]:
    """(hits, misses) of the tagger's Tag on `instances`: a real tagger process reading the
    release's Redis, as the chart's tagger Deployment does."""
    tagger_port, metrics_port = free_ports(2)
    settings = Settings(home=tmp_path / "tagger-home", redis_url=redis_url, tagger_port=tagger_port,
                        tagger_metrics_port=metrics_port)
    process = subprocess.Popen([sys.executable, "-m", "hyper_tagger.server"], env=os.environ | settings.to_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = settings.address("tagger")

    def serving_now() -> bool:
        assert process.poll() is None, "the tagger exited during start-up"
        return serving.health_status(address, settings) == "SERVING"

    try:
        wait_for(serving_now, "the tagger to serve", timeout=180)
        with serving.channel(address, settings) as channel:
            reply = tagger_pb2_grpc.TaggerServiceStub(channel).Tag(
                tagger_pb2.TagRequest(instances=[proto_convert.instance_to_proto(i) for i in instances]), timeout=300)
        return reply.cache_hits, reply.cache_misses
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_hyper_tag_fans_out_shards_that_the_tagger_then_finds_cached(cluster, tag_node, release_redis, tmp_path):
    path, instances = dataset_on_volume(tag_node.state, "tag-fan-out.jsonl", slice(0, 30))
    output = finished(hyper_tag(cluster, path, "--shards", "3", "--parallelism", "2"), tag_node)
    job = output.split("created job ")[1].split()[0]
    assert f"job {job}: 3 of 3 pods succeeded" in output and "Complete" in output

    records = done_records(tag_node.state, job)
    assert [r["shard"] for r in records] == [0, 1, 2]
    assert [r["rows"] for r in records] == [10, 10, 10] and sum(r["misses"] for r in records) == 30
    assert pod_phases(cluster, job) == ["Succeeded"] * 3
    assert cache_lookups(release_redis, instances, tmp_path) == (30, 0)


def test_a_pod_killed_mid_shard_leaves_it_to_a_retry(cluster, tag_node, release_redis, tmp_path):
    path, instances = dataset_on_volume(tag_node.state, "tag-retry.jsonl", slice(30, 50))
    command = hyper_tag(cluster, path, "--shards", "2", "--parallelism", "1", lease_seconds=10)
    claims = tag_node.state / "tag-runs"
    claim = wait_for(lambda: next(claims.glob("tag-tag-retry-*/shard-*.claim-0"), None), "a pod to claim a shard",
                     timeout=180)
    assert not list(claim.parent.glob("*.done"))  # it dies mid-shard: while loading the models
    [pod] = tag_node.running.values()
    os.killpg(pod.process.pid, signal.SIGKILL)

    output = finished(command, tag_node)
    job = claim.parent.name
    assert "Complete" in output
    assert pod_phases(cluster, job) == ["Failed", "Succeeded", "Succeeded"]
    records = done_records(tag_node.state, job)
    assert [(r["shard"], r["rows"]) for r in records] == [(0, 10), (1, 10)]
    assert sorted(p.name for p in claim.parent.glob(f"{claim.name[:11]}.claim-*")) == [
        f"{claim.name[:11]}.claim-0", f"{claim.name[:11]}.claim-1"]  # the stale claim was taken over
    assert cache_lookups(release_redis, instances, tmp_path) == (20, 0)
