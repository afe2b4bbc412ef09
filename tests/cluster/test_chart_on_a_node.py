"""The chart on a real node: our images as pods under a real runtime, reached through their
Services and the cluster DNS, training Jobs launched with kubectl, Prometheus scraping the pods
through the chart's own scrape configuration."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from harness import faults
from harness.experiments import prepare_experiment
from harness.kube import KUBE_BIN
from harness.local import free_ports
from harness.models import known_ppm
from harness.polling import wait_for
from hyper.api import proto_convert, serving
from hyper.api.clients import PPMClient, RouterClient
from hyper.api.proto_convert import message_to_dict
from hyper.core.catalogue import FEATURE_NAMES
from hyper.core.settings import Settings
from hyper.infra.dashboards import expressions
from hyper.method.performance_models import QuadraticForm, artifact_digest
from hyper.v1 import tagger_pb2, tagger_pb2_grpc
from hyper.workflows.training_loop import write_plain_jsonl
from hyper_ppm.store import ModelRegistry
from scripts import images
from tests.cluster.conftest import CRON_EXPERIMENT, NAMESPACE, REDIS_UID, SERVICE_UID, VOLUME, Release

pytestmark = pytest.mark.cluster
COMPONENTS = ("tagger", "ppm", "router", "gateway", "redis")
PPM_NAME = "cluster"
OUTSIDE = Settings(home=Path("/nonexistent"))  # a client outside the cluster, with no token of hyper up's


def component(pod: dict) -> str:
    return pod["metadata"]["labels"]["app.kubernetes.io/name"]


def as_client(address: str):
    return serving.channel(address, OUTSIDE)


def the_ppm() -> dict:
    return known_ppm(list(FEATURE_NAMES), QuadraticForm(0.6, np.random.default_rng(0).normal(
        0, 1e-3, len(FEATURE_NAMES)))).to_json()


def test_every_component_is_a_pod_ready_through_its_own_probes_as_its_user_on_a_read_only_root(release: Release):
    pods = {component(p): p for p in release.pods()}
    assert set(COMPONENTS) <= set(pods)
    for name in COMPONENTS:
        pod = pods[name]
        [status] = pod["status"]["containerStatuses"]
        assert status["ready"] and status["restartCount"] == 0, (name, status)
        user = release.kubectl("exec", pod["metadata"]["name"], "--", "id", "-u").stdout.strip()
        assert user == str(REDIS_UID if name == "redis" else SERVICE_UID), name
        written = release.kubectl("exec", pod["metadata"]["name"], "--", "touch", "/written", check=False)
        assert written.returncode != 0 and "Read-only file system" in written.stderr, (name, written.stderr)


def test_a_route_through_the_router_s_service_and_the_gateway_answers_as_the_embedded_default(
        release: Release, hh_dataset, tmp_path):
    pairs = hh_dataset.instances[:60]
    request = faults.route_request(pairs)
    request.ppm_model = PPM_NAME
    with as_client(f"{release.cluster_ip('ppm')}:50052") as channel:
        PPMClient(channel).import_model(PPM_NAME, json.dumps({"artifact": the_ppm(), "sha256": artifact_digest(
            the_ppm())}))  # as `hyper ppm export` writes it
    with as_client(f"{release.cluster_ip('router')}:50053") as channel:
        in_cluster = RouterClient(channel).route(request)
    with port_forward(release, "service/hyper-gateway", 8080) as gateway:
        body = {"dataset": {"inline": {"instances": [message_to_dict(proto_convert.instance_to_proto(i))
                                                     for i in pairs]}},
                "budget": {"fraction": 0.25}, "strategy": "topk", "ppm_model": PPM_NAME}
        over_rest = requests.post(f"{gateway}/v1/route", json=body, timeout=300)
        assert over_rest.status_code == 200, over_rest.text
    with faults.System.running(tmp_path / "embedded") as system:
        ModelRegistry(system.settings.ppm_dir).save(PPM_NAME, the_ppm())
        embedded = RouterClient(system.channel("router")).route(request)

    def humans(assignments) -> set[str]:
        return {a["id"] if isinstance(a, dict) else a.id for a in assignments
                if (a["route"] if isinstance(a, dict) else a.route) == "human"}

    assert humans(in_cluster.assignments) == humans(embedded.assignments) == humans(over_rest.json()["assignments"])
    assert in_cluster.predicted_score == pytest.approx(embedded.predicted_score)


class port_forward:
    """`kubectl port-forward` to a free local port, as a user reaches the gateway."""

    def __init__(self, release: Release, target: str, port: int):
        [self.local] = free_ports(1)
        self.process = subprocess.Popen(
            [str(KUBE_BIN / "kubectl"), f"--kubeconfig={release.node.kubeconfig}", "-n", NAMESPACE, "port-forward",
             target, f"{self.local}:{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def __enter__(self) -> str:
        url = f"http://127.0.0.1:{self.local}"

        def answers() -> bool:
            assert self.process.poll() is None, self.process.stdout.read() if self.process.stdout else ""
            try:
                return requests.get(f"{url}/livez", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_for(answers, "kubectl port-forward to the gateway", 60)
        return url

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def finished_job(release: Release, name: str, timeout: float = 600) -> str:
    def done() -> str:
        job = json.loads(release.kubectl("get", "job", name, "-o", "json").stdout)
        return next((c["type"] for c in job["status"].get("conditions", [])
                     if c["type"] in ("Complete", "Failed") and c["status"] == "True"), "")

    return wait_for(done, f"job {name} to finish", timeout, interval=2)


def owned_by_the_pods(path: Path) -> None:
    """What a user copies onto the volume belongs to the pods' user (kubectl cp into a pod does that)."""
    for item in [path, *path.rglob("*")]:
        shutil.chown(item, SERVICE_UID, SERVICE_UID)


def recorded(release: Release, experiment: str) -> list[tuple[str, str]]:
    with as_client(f"{release.cluster_ip('ppm')}:50052") as channel:
        return [(r.run_id, r.state) for r in PPMClient(channel).list_runs(experiment)]


def test_kubectl_jobs_train_in_rm_trainer_pods_and_record_their_runs_in_the_cluster_s_ppm(
        release: Release, hh_dataset, tmp_path):
    prepare_experiment(release.state, CRON_EXPERIMENT, hh_dataset)
    rendered = prepare_experiment(release.state, "cluster-rendered", hh_dataset)
    owned_by_the_pods(release.state / "experiments")
    release.kubectl("create", "job", "cron-run", "--from=cronjob/hyper-rm-trainer")
    small_node = os.environ | {"HYPER_JOB_CPU": "250m", "HYPER_JOB_MEMORY": "1Gi"}  # 2 CPUs, shared
    subprocess.run([shutil.which("hyper") or "hyper", "jobs", "render", str(rendered), "--namespace", NAMESPACE,
                    "--out", str(tmp_path), "--image", "localhost/hyper-rm-trainer:local",
                    "--spec-path-in-cluster", f"{VOLUME}/experiments/cluster-rendered/spec.json"],
                   check=True, capture_output=True, env=small_node)
    [manifest] = tmp_path.glob("*.yaml")
    release.kubectl("create", "-f", str(manifest))
    name = yaml.safe_load(manifest.read_text())["metadata"]["name"]
    for job in ("cron-run", name):
        assert finished_job(release, job) == "Complete", release.kubectl("logs", f"job/{job}", check=False).stdout
    log = release.kubectl("logs", "job/cron-run").stdout
    assert '"msg": "starting"' in log or "starting" in log
    assert recorded(release, CRON_EXPERIMENT) == [(f"{CRON_EXPERIMENT}-r{i}", "succeeded") for i in range(3)]
    assert recorded(release, "cluster-rendered") == [(f"cluster-rendered-r{i}", "succeeded") for i in range(3)]


def meta_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def kubernetes_sd_target(pod: dict) -> dict:
    """A pod as Prometheus's Kubernetes discovery (role pod) describes it, from the same API
    object: Debian's Prometheus is built without that discovery (its Go client is not packaged),
    so the test hands the pods over in a file with the same meta labels, and the chart's own
    relabelling picks and addresses them unchanged."""
    meta = {"__meta_kubernetes_namespace": pod["metadata"]["namespace"],
            "__meta_kubernetes_pod_name": pod["metadata"]["name"],
            "__meta_kubernetes_pod_ip": pod["status"].get("podIP", ""),
            "__meta_kubernetes_pod_phase": pod["status"].get("phase", "")}
    meta |= {f"__meta_kubernetes_pod_label_{meta_name(k)}": v for k, v in pod["metadata"].get("labels", {}).items()}
    meta |= {f"__meta_kubernetes_pod_annotation_{meta_name(k)}": v
             for k, v in pod["metadata"].get("annotations", {}).items()}
    return {"targets": [pod["status"].get("podIP") or "0.0.0.0"], "labels": meta}


def test_prometheus_finds_the_pods_through_the_chart_s_scrape_configuration_and_answers_the_dashboards(
        release: Release, tmp_path, hh_dataset):
    scrape = yaml.safe_load(json.loads(release.kubectl("get", "configmap", "hyper-prometheus-scrape", "-o",
                                                       "json").stdout)["data"]["scrape-configs.yaml"])
    targets = tmp_path / "pods.json"
    targets.write_text(json.dumps([kubernetes_sd_target(pod) for pod in release.pods()]))
    for job in scrape:  # Debian's Prometheus is built without the Kubernetes discovery: see kubernetes_sd_target
        job.pop("kubernetes_sd_configs")
        job["file_sd_configs"] = [{"files": [str(targets)]}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
                                      "scrape_configs": scrape}))
    [port] = free_ports(1)
    with open(tmp_path / "prometheus.log", "wb") as log:
        prometheus = subprocess.Popen([shutil.which("prometheus") or "prometheus", f"--config.file={config}",
                                       f"--storage.tsdb.path={tmp_path / 'data'}",
                                       f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                return requests.get(f"{url}/-/ready", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_for(ready, "prometheus to start", 60)

        def query(expr: str) -> list[dict]:
            reply = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
            return reply["data"]["result"] if reply.get("status") == "success" else []

        scraped = {"tagger", "ppm", "router", "gateway"}
        wait_for(lambda: {r["metric"]["component"] for r in query("up == 1")} >= scraped, "every pod scraped", 120)
        with as_client(f"{release.cluster_ip('router')}:50053") as channel:
            request = faults.route_request(faults.fresh_pairs(hh_dataset.instances, 30))
            request.ppm_model = PPM_NAME
            RouterClient(channel).route(request)
        wait_for(lambda: query("sum(rate(hyper_router_routes_total[1m])) > 0"), "a Route rate from the pod", 120)
        answered = {(uid, title) for uid, title, expr in expressions() if query(expr)}
        active = requests.get(f"{url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        assert all(re.match(r"10\.244\.0\.\d+:\d+", t["labels"]["instance"]) for t in active)  # the pods' own IPs
        assert {("hyper-routing", "Route calls by strategy"), ("hyper-services", "gRPC requests by method"),
                ("hyper-tagger", "Tagging throughput"), ("hyper-services", "Resident memory")} <= answered
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=20)


def test_the_tagging_fan_out_runs_its_shards_as_pods_that_fill_the_release_s_redis(release: Release, hh_dataset):
    pairs = faults.fresh_pairs(hh_dataset.instances, 30)
    data = release.state / "data" / "fan-out.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    write_plain_jsonl(data, pairs)
    owned_by_the_pods(data.parent)
    env = os.environ | {"KUBECONFIG": str(release.node.kubeconfig),
                        "HYPER_TAG_JOB_IMAGE": images.image_name("tagger"),  # a 2-CPU node's share:
                        "HYPER_TAG_JOB_CPU": "250m", "HYPER_TAG_JOB_MEMORY": "1Gi"}
    tagged = subprocess.run([shutil.which("hyper") or "hyper", "tag", str(data), "--backend", "kubernetes",
                             "--namespace", NAMESPACE, "--path-in-cluster", f"{VOLUME}/data/{data.name}",
                             "--shards", "3", "--parallelism", "2"], capture_output=True, text=True, env=env,
                            timeout=900)
    assert tagged.returncode == 0, tagged.stdout + tagged.stderr
    job = tagged.stdout.split("created job ")[1].split()[0]
    assert f"job {job}: 3 of 3 pods succeeded" in tagged.stdout
    phases = [p["status"]["phase"] for p in release.pods() if p["metadata"]["labels"].get("job-name") == job]
    assert phases == ["Succeeded"] * 3
    with as_client(f"{release.cluster_ip('tagger')}:50051") as channel:  # the in-cluster tagger finds them cached
        reply = tagger_pb2_grpc.TaggerServiceStub(channel).Tag(
            tagger_pb2.TagRequest(instances=[proto_convert.instance_to_proto(i) for i in pairs]), timeout=300)
    assert (reply.cache_hits, reply.cache_misses) == (30, 0)
