"""The k8s tests' shared fixtures: a real control plane (kube-apiserver + controller-manager
v1.20.2, harness/kube.py) per test module, with the chart installed in it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.kube import KubeCluster, missing_binaries
from harness.node_agent import NodeAgent

CHART = Path(__file__).resolve().parents[2] / "helm" / "hyper"
NAMESPACE = "hyper"
VOLUME = "/var/lib/hyper"  # where the trainer pods mount the state claim
CRON_EXPERIMENT = "k8s-cron"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        pytest.fail(f"missing {missing}: scripts/build_kube.sh builds them (make test runs it)")
    kube = KubeCluster(tmp_path_factory.mktemp("kube")).start()
    yield kube
    kube.stop()


@pytest.fixture(scope="module")
def installed(cluster, tmp_path_factory) -> list[dict]:
    """The chart rendered for this v1.20 server and applied with kubectl, the trainer
    CronJob pointed at an experiment's spec on the state volume."""
    rendered = subprocess.run(
        [shutil.which("helm"), "template", "hyper", str(CHART), "--kube-version", "1.20.2",
         "--namespace", NAMESPACE, "--set", f"trainer.spec={VOLUME}/experiments/{CRON_EXPERIMENT}/spec.json"],
        capture_output=True, text=True, check=True).stdout
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=rendered)
    return [d for d in yaml.safe_load_all(rendered) if d]


def start_node(cluster, label_selector: str, tmp_path_factory) -> NodeAgent:
    """A node agent for the pods `label_selector` picks, with the release's state claim bound
    to a fresh directory (`agent.state`); stop it with `agent.stop()`."""
    state = tmp_path_factory.mktemp("state-volume")
    agent = NodeAgent(cluster.api_client(), NAMESPACE, label_selector, {"hyper-state": state},
                      tmp_path_factory.mktemp("node")).start()
    agent.state = state
    return agent
