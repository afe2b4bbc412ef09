"""The chart on a real single-node cluster (harness/node): the images scripts/images.py builds,
loaded into the node's containerd, installed with `helm install` and only values changed
(tests/cluster/values.yaml). One cluster and one release for the whole run; `make test-cluster`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.node import images as node_images
from harness.node.cluster import SingleNodeCluster, missing
from harness.polling import wait_for
from scripts import images

CHART = Path(__file__).resolve().parents[2] / "helm" / "hyper"
VALUES = Path(__file__).with_name("values.yaml")
NAMESPACE = "hyper"
VOLUME = "/var/lib/hyper"
CRON_EXPERIMENT = "cluster-cron"
SERVICE_IMAGES = [images.image_name(service) for service in images.BUILT_HERE]
# The pods' users: the services' image user, Redis's own (the chart's securityContext).
SERVICE_UID, REDIS_UID = 10001, 999


@dataclass
class Release:
    """The chart installed on the node: its namespace and the host directories behind its volumes."""

    node: SingleNodeCluster
    state: Path
    redis_data: Path

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.node.kubectl("-n", NAMESPACE, *args, check=check)

    def pods(self) -> list[dict]:
        return json.loads(self.kubectl("get", "pods", "-o", "json").stdout)["items"]

    def cluster_ip(self, service: str) -> str:
        return self.kubectl("get", "service", f"hyper-{service}", "-o", "jsonpath={.spec.clusterIP}").stdout

    def helm(self, *args: str) -> str:
        result = subprocess.run([shutil.which("helm") or "helm", *args, "--kubeconfig", str(self.node.kubeconfig),
                                 "--namespace", NAMESPACE], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def wait_ready(self, timeout: float = 600) -> None:
        """Every pod of the release Running and Ready, none left terminating."""
        def ready() -> bool:
            pods = [p for p in self.pods() if "job-name" not in p["metadata"].get("labels", {})]
            return bool(pods) and all(
                p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
                and all(c.get("ready") for c in p["status"].get("containerStatuses", [{}])) for p in pods)

        wait_for(ready, f"the release's pods Ready (see {self.node.workdir}/kubelet.log)", timeout)


@pytest.fixture(scope="package")  # torn down once tests/cluster is done, not at the session's end
def node(tmp_path_factory):
    lacking = missing() + ([reason] if (reason := images.available()) else [])
    if lacking:
        pytest.fail(f"the single-node cluster needs {lacking}: `make test-cluster` installs and builds them")
    images.build_all(progress=lambda line: None)
    cluster = SingleNodeCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        for image in [node_images.pause_image(), node_images.redis_image(), *SERVICE_IMAGES]:
            cluster.load_image(image)
        yield cluster
    finally:
        cluster.stop()
    assert cluster.leftovers() == [], "the cluster's teardown left these behind"


def owned_directory(path: Path, uid: int) -> Path:
    """A volume's directory on the node, owned as the pods that mount it run (a hostPath volume
    keeps its owner: fsGroup does not apply to it)."""
    path.mkdir(parents=True)
    os.chown(path, uid, uid)
    return path


def persistent_volumes(state: Path, redis_data: Path) -> str:
    """The node's storage for the chart's claims (no provisioner here): retained on release."""
    volumes = [("hyper-state", "20Gi", "ReadWriteMany", state), ("hyper-redis", "2Gi", "ReadWriteOnce", redis_data)]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [{
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": [mode], "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": str(path), "type": "Directory"}}} for name, size, mode, path in volumes]})


@pytest.fixture(scope="package")
def release(node) -> Release:
    volumes = node.workdir / "volumes"
    installed = Release(node, owned_directory(volumes / "state", SERVICE_UID),
                        owned_directory(volumes / "redis", REDIS_UID))
    node.kubectl("apply", "-f", "-", input=persistent_volumes(installed.state, installed.redis_data))
    node.kubectl("create", "namespace", NAMESPACE)
    installed.helm("install", "hyper", str(CHART), "-f", str(VALUES),
                   "--set", f"trainer.spec={VOLUME}/experiments/{CRON_EXPERIMENT}/spec.json")
    installed.wait_ready()
    return installed
