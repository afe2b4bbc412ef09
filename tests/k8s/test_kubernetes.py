"""The chart and the training Jobs against a real Kubernetes API server (v1.20.2, see
harness/kube.py) with a test agent in the node's place (harness/node_agent.py):
the chart installs, and Jobs created with kubectl or the Python client train proxy RMs that
record their results in ppm (the session's real ppm process) and become Complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from kubernetes import client

from harness.experiments import prepare_experiment
from harness.polling import wait_for
from hyper.api.access import local_token
from hyper.api.clients import PPMClient
from tests.k8s.conftest import CRON_EXPERIMENT, NAMESPACE, VOLUME, start_node

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def node(cluster, installed, services, tmp_path_factory):
    """The node: runs rm-trainer pods with the release's claim. In a cluster the chart's
    ConfigMap sends trainers to the ppm Service; here ppm is the test session's process, which
    admits the holders of `hyper up`'s token: the trainers are given it."""
    cluster.kubectl("patch", "configmap", "hyper-config", "-n", NAMESPACE, "--type", "merge", "-p",
                    json.dumps({"data": {"HYPER_PPM_ADDRESS": services.address("ppm"),
                                         "HYPER_CALLER_TOKEN": local_token(services.home)}}))
    cluster.kubectl("patch", "secret", "hyper-secrets", "-n", NAMESPACE, "--type", "merge", "-p",
                    json.dumps({"stringData": {"ppm-record-token": local_token(services.home)}}))
    agent = start_node(cluster, "app.kubernetes.io/name=rm-trainer", tmp_path_factory)
    yield agent
    agent.stop()


def wait_for_job(cluster, node, name: str, timeout: float = 300) -> client.V1Job:
    batch = client.BatchV1Api(cluster.api_client())

    def finished() -> client.V1Job | None:
        job = batch.read_namespaced_job_status(name, NAMESPACE)
        done = any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or [])
        return job if done else None

    try:
        return wait_for(finished, f"job {name} to finish", timeout)
    except TimeoutError as error:
        logs = "\n".join(p.read_text()[-2000:] for p in node.workdir.glob("*.log"))
        raise TimeoutError(f"{error}; pod logs:\n{logs}") from error


def condition(job: client.V1Job, node) -> str:
    """Complete or Failed; a failure comes with the pods' logs."""
    state = next(c.type for c in job.status.conditions if c.status == "True")
    if state == "Failed":
        logs = {p.name: p.read_text()[-1500:] for p in node.workdir.glob(f"{job.metadata.name}-*.log")}
        print(f"job {job.metadata.name} failed; pod logs: {json.dumps(logs, indent=1)}")
    return state


def job_pods(cluster, name: str) -> list[str]:
    pods = client.CoreV1Api(cluster.api_client()).list_namespaced_pod(
        NAMESPACE, label_selector=f"job-name={name}")
    return sorted(p.status.phase for p in pods.items)


def recorded(channels, experiment: str) -> list[tuple[str, str]]:
    return [(r.run_id, r.state) for r in PPMClient(channels["ppm"]).list_runs(experiment)]


def hyper_cli(cluster, *args: str) -> str:
    env = os.environ | {"KUBECONFIG": str(cluster.kubeconfig)}
    result = subprocess.run([sys.executable, "-m", "hyper.cli", *args], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_chart_installs_on_a_v1_20_api_server(cluster, installed):
    for document in installed:
        kind, name = document["kind"].lower(), document["metadata"]["name"]
        live = json.loads(cluster.kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json").stdout)
        assert live["apiVersion"] == document["apiVersion"], (kind, name)
    cronjob = next(d for d in installed if d["kind"] == "CronJob")
    assert cronjob["apiVersion"] == "batch/v1beta1"  # what 1.20 serves; current clusters get batch/v1
    pods = client.CoreV1Api(cluster.api_client()).list_namespaced_pod(NAMESPACE)
    owners = {p.metadata.labels["app.kubernetes.io/name"] for p in pods.items}
    assert {"tagger", "ppm", "router", "gateway", "redis"} <= owners  # the controllers made pods


def test_kubectl_create_job_from_the_cronjob_trains_and_reports_to_ppm(cluster, node, hh_dataset, channels):
    prepare_experiment(node.state, CRON_EXPERIMENT, hh_dataset)
    cluster.kubectl("create", "job", "cron-run", "--from=cronjob/hyper-rm-trainer", "-n", NAMESPACE)
    job = wait_for_job(cluster, node, "cron-run")
    assert condition(job, node) == "Complete" and job.status.succeeded == 1
    assert recorded(channels, CRON_EXPERIMENT) == [(f"{CRON_EXPERIMENT}-r{i}", "succeeded") for i in range(3)]


def test_kubectl_create_f_a_rendered_job_trains_and_reports_to_ppm(cluster, node, hh_dataset, channels, tmp_path):
    spec = prepare_experiment(node.state, "k8s-rendered", hh_dataset)
    hyper_cli(cluster, "jobs", "render", str(spec), "--namespace", NAMESPACE, "--out", str(tmp_path),
              "--spec-path-in-cluster", f"{VOLUME}/experiments/k8s-rendered/spec.json")
    [manifest] = tmp_path.glob("*.yaml")
    cluster.kubectl("create", "-f", str(manifest))
    job = wait_for_job(cluster, node, yaml.safe_load(manifest.read_text())["metadata"]["name"])
    assert condition(job, node) == "Complete"
    assert recorded(channels, "k8s-rendered") == [(f"k8s-rendered-r{i}", "succeeded") for i in range(3)]


def test_hyper_jobs_submit_creates_the_job_through_the_python_client(cluster, node, hh_dataset, channels):
    spec = prepare_experiment(node.state, "k8s-client", hh_dataset)
    out = hyper_cli(cluster, "jobs", "submit", str(spec), "--backend", "kubernetes", "--namespace",
                    NAMESPACE, "--spec-path-in-cluster", f"{VOLUME}/experiments/k8s-client/spec.json")
    name = out.split()[2]
    assert out.startswith(f"created job {name} in {NAMESPACE}")
    assert condition(wait_for_job(cluster, node, name), node) == "Complete"
    assert recorded(channels, "k8s-client") == [(f"k8s-client-r{i}", "succeeded") for i in range(3)]


def test_a_failed_pod_is_retried_and_each_run_is_recorded_once(cluster, node, hh_dataset, channels, tmp_path):
    spec = prepare_experiment(node.state, "k8s-retry", hh_dataset)
    pool = spec.with_name("pool.jsonl")
    pool.rename(pool.with_suffix(".late"))  # the first pod finds its data missing and fails
    hyper_cli(cluster, "jobs", "render", str(spec), "--namespace", NAMESPACE,
              "--out", str(tmp_path), "--spec-path-in-cluster", f"{VOLUME}/experiments/k8s-retry/spec.json")
    [manifest] = tmp_path.glob("*.yaml")
    name = yaml.safe_load(manifest.read_text())["metadata"]["name"]
    cluster.kubectl("create", "-f", str(manifest))

    batch = client.BatchV1Api(cluster.api_client())
    wait_for(lambda: batch.read_namespaced_job_status(name, NAMESPACE).status.failed,
             "the first pod to fail", timeout=180)
    assert recorded(channels, "k8s-retry") == [(f"k8s-retry-r{i}", "failed") for i in range(3)]
    pool.with_suffix(".late").rename(pool)  # the data arrives before the controller's retry

    job = wait_for_job(cluster, node, name)
    assert condition(job, node) == "Complete" and (job.status.failed, job.status.succeeded) == (1, 1)
    assert job_pods(cluster, name) == ["Failed", "Succeeded"]
    runs = PPMClient(channels["ppm"]).list_runs("k8s-retry")
    assert [(r.run_id, r.state) for r in runs] == [(f"k8s-retry-r{i}", "succeeded") for i in range(3)]
    assert len({r.run_id for r in runs}) == len(runs) == 3
