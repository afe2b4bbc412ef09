"""Day-2 operations on the node: a killed pod is replaced with its state intact, an upgrade to a
new image tag never runs two writers of a file-backed store, and an uninstall keeps the state
volume. (Runs after test_chart_on_a_node.py: the uninstall ends the release.)"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from harness import faults
from harness.polling import wait_for
from hyper.api import serving
from hyper.api.clients import PPMClient, RouterClient
from hyper.core.settings import Settings
from hyper.v1 import ppm_pb2
from tests.cluster.conftest import SERVICE_IMAGES, Release

pytestmark = pytest.mark.cluster
OUTSIDE = Settings(home=Path("/nonexistent"))
UPGRADED = "upgraded"


def routed(release: Release, pairs) -> str:
    request = faults.route_request(pairs)
    request.strategy, request.ppm_model, request.seed = "random", "", 3
    with serving.channel(f"{release.cluster_ip('router')}:50053", OUTSIDE) as channel:
        return RouterClient(channel).route(request).route_id


def fetched(release: Release, route_id: str) -> int:
    with serving.channel(f"{release.cluster_ip('router')}:50053", OUTSIDE) as channel:
        return RouterClient(channel).get_route(route_id).n_instances


def runs(release: Release) -> set[str]:
    with serving.channel(f"{release.cluster_ip('ppm')}:50052", OUTSIDE) as channel:
        return {r.run_id for r in PPMClient(channel).list_runs("day-two")}


def record_run(release: Release, run_id: str) -> None:
    """As a training Job does, with the release's record token."""
    encoded = release.kubectl("get", "secret", "hyper-secrets", "-o", "jsonpath={.data.ppm-record-token}").stdout
    with serving.channel(f"{release.cluster_ip('ppm')}:50052", OUTSIDE) as channel:
        PPMClient(channel, record_token=base64.b64decode(encoded).decode()).record_run(
            ppm_pb2.Run(run_id=run_id, experiment="day-two", state="failed", failure_reason="day two"))


def pod_names(release: Release, name: str) -> list[str]:
    return [p["metadata"]["name"] for p in release.pods()
            if p["metadata"]["labels"].get("app.kubernetes.io/name") == name]


def test_a_killed_pod_is_replaced_and_the_routes_and_runs_it_held_are_still_there(release: Release, hh_dataset):
    route_id = routed(release, faults.fresh_pairs(hh_dataset.instances, 40))
    record_run(release, "before-kill")
    for name in ("ppm", "router"):
        [old] = pod_names(release, name)
        release.kubectl("delete", "pod", old, "--wait=false")
        wait_for(lambda old=old, name=name: pod_names(release, name) not in ([old], []), f"a new {name} pod", 120)
    release.wait_ready()
    assert fetched(release, route_id) == 40 and "before-kill" in runs(release)


class PodCount:
    """How many pods of each component existed at once, at most, while it watched (every 0.2 s)."""

    def __init__(self, release: Release):
        self.release = release
        self.most: Counter[str] = Counter()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.done.wait(0.2):
            now = Counter(p["metadata"]["labels"].get("app.kubernetes.io/name") for p in self.release.pods()
                          if "job-name" not in p["metadata"]["labels"])
            for name, count in now.items():
                self.most[name] = max(self.most[name], count)

    def __enter__(self) -> PodCount:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def test_an_upgrade_to_a_new_image_tag_never_runs_two_writers_of_the_files_and_keeps_them(release: Release,
                                                                                          hh_dataset):
    route_id = routed(release, faults.fresh_pairs(hh_dataset.instances, 40))
    record_run(release, "before-upgrade")
    for image in SERVICE_IMAGES:  # a new release of the same code: the node has it under a new tag
        release.node.ctr("images", "tag", image, image.replace(":local", f":{UPGRADED}"))
    with PodCount(release) as count:
        release.helm("upgrade", "hyper", str(Path(__file__).resolve().parents[2] / "helm" / "hyper"),
                     "--reuse-values", "--set", f"image.tag={UPGRADED}")
        wait_for(lambda: all(c["image"].endswith(f":{UPGRADED}") for p in release.pods()
                             if "job-name" not in p["metadata"]["labels"] and p["metadata"]["labels"].get(
                                 "app.kubernetes.io/name") != "redis" for c in p["spec"]["containers"]),
                 "every service on the new tag", 300)
        release.wait_ready()
    assert count.most["ppm"] == 1 and count.most["router"] == 1, count.most  # Recreate: one writer at a time
    assert fetched(release, route_id) == 40 and {"before-kill", "before-upgrade"} <= runs(release)


def test_an_uninstall_keeps_the_state_volume_and_what_it_holds(release: Release):
    release.helm("uninstall", "hyper")
    wait_for(lambda: not [p for p in release.pods() if "job-name" not in p["metadata"]["labels"]],
             "the release's pods to go", 180)
    claims = json.loads(release.kubectl("get", "pvc", "-o", "json").stdout)["items"]
    assert {c["metadata"]["name"]: c["status"]["phase"] for c in claims}["hyper-state"] == "Bound"
    assert list((release.state / "routes").glob("*.json")) and list((release.state / "ppm" / "runs").rglob("*.json"))
