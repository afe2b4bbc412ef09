"""A stand-in for a node (kubelet + container runtime) in the k8s tests.

It runs each Pending pod of a namespace as a local process and reports the pod's phase
through the pod status API, which is all the Job controller needs to count successes,
failures and retries. What a container runtime would do is reduced to the part our Jobs
depend on: the container's command, args and env, and its volumes bind-mounted at their
mount paths in a private mount namespace (persistentVolumeClaims from `claims`, emptyDirs
fresh per pod). The "image" is this checkout's virtualenv, kept visible under the volumes.
Images, resources, securityContext and scheduling are not enforced.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

log = logging.getLogger(__name__)
REPOSITORY = Path(__file__).resolve().parents[2]
# Mount points for trees a volume would hide; outside every path our pods mount.
STAGING = Path("/run/hyper-node-agent")
MERGE_PATCH = "application/merge-patch+json"
SUBSCRIPTED_FIELD = re.compile(r"metadata\.(?P<map>labels|annotations)\['(?P<key>[^']+)'\]")
# Mounts first, then exec the container's command: `sh -c SCRIPT sh HOST1 PATH1 ... -- ARGV`.
MOUNT_SCRIPT = """
while [ "$1" != "--" ]; do mkdir -p "$2" && mount --bind "$1" "$2" || exit 125; shift 2; done
shift; exec "$@"
"""


@dataclass
class PodProcess:
    name: str
    process: subprocess.Popen
    scratch: Path


def _pod_field(pod: client.V1Pod, field_path: str) -> str:
    """A downward-API field of the pod's metadata, as the kubelet reads it: a label or
    annotation the pod lacks is the empty string (how a pod of an API server without Indexed
    Jobs sees batch.kubernetes.io/job-completion-index). Other fields: the pod is rejected."""
    simple = {"metadata.name": pod.metadata.name, "metadata.namespace": pod.metadata.namespace,
              "metadata.uid": pod.metadata.uid}
    if field_path in simple:
        return simple[field_path]
    match = SUBSCRIPTED_FIELD.fullmatch(field_path)
    if match is None:
        raise ValueError(f"pod {pod.metadata.name}: the agent does not resolve fieldRef {field_path}")
    values = pod.metadata.labels if match["map"] == "labels" else pod.metadata.annotations
    return (values or {}).get(match["key"], "")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeAgent:
    """Runs the pods of `namespace` that match `label_selector` until `stop()`; each pod's
    output goes to <workdir>/<pod>.log."""

    def __init__(self, api_client, namespace: str, label_selector: str, claims: dict[str, Path],
                 workdir: Path):
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.label_selector = label_selector
        self.claims = claims
        self.workdir = Path(workdir)
        self.running: dict[str, PodProcess] = {}
        self.seen: set[str] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="node-agent", daemon=True)

    def start(self) -> NodeAgent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        for pod in self.running.values():
            pod.process.kill()

    def _loop(self) -> None:
        while not self.stopping.wait(0.2):
            try:
                self._start_pending()
                self._report_finished()
            except Exception:  # noqa: BLE001 - keep playing the node; the test sees the log
                log.exception("node agent poll failed")

    def _start_pending(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, field_selector="status.phase=Pending",
                                         label_selector=self.label_selector)
        for pod in pods.items:
            if pod.metadata.uid in self.seen or pod.metadata.deletion_timestamp:
                continue
            self.seen.add(pod.metadata.uid)
            try:
                self.running[pod.metadata.uid] = self._run(pod)
            except (KeyError, ValueError) as error:  # a pod this node cannot run fails, with why
                self._patch(pod.metadata.name, {"phase": "Failed", "reason": "AgentRejected",
                                                "message": str(error)})
                continue
            self._patch(pod.metadata.name, {"phase": "Running", "startTime": _now(),
                                            "containerStatuses": [self._container_status(
                                                pod, {"running": {"startedAt": _now()}})]})

    def _report_finished(self) -> None:
        for uid, pod in list(self.running.items()):
            code = pod.process.poll()
            if code is None:
                continue
            del self.running[uid]
            shutil.rmtree(pod.scratch, ignore_errors=True)
            shutil.rmtree(STAGING / uid, ignore_errors=True)  # empty mount points
            exit_code = 128 - code if code < 0 else code  # killed by a signal, as a runtime reports it
            reason = "Completed" if code == 0 else "Error"
            terminated = {"exitCode": exit_code, "reason": reason, "finishedAt": _now()}
            live = self.core.read_namespaced_pod(pod.name, self.namespace)
            self._patch(pod.name, {"phase": "Succeeded" if code == 0 else "Failed",
                                   "containerStatuses": [self._container_status(
                                       live, {"terminated": terminated})]})

    def _patch(self, name: str, status: dict) -> None:
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status},
                                              _content_type=MERGE_PATCH)

    @staticmethod
    def _container_status(pod: client.V1Pod, state: dict) -> dict:
        container = pod.spec.containers[0]
        return {"name": container.name, "image": container.image, "imageID": "", "ready": False,
                "restartCount": 0, "state": state}

    def _run(self, pod: client.V1Pod) -> PodProcess:
        if len(pod.spec.containers) != 1:
            raise ValueError(f"pod {pod.metadata.name}: the agent runs one container per pod")
        container = pod.spec.containers[0]
        scratch = Path(tempfile.mkdtemp(prefix=f"{pod.metadata.name}-", dir=self.workdir))
        mounts = self._mounts(pod, container, scratch)
        argv = (container.command or []) + (container.args or [])
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the "image"
        argv[0] = shutil.which(argv[0], path=path) or argv[0]
        env = {"PATH": path, "HOME": str(scratch)} | self._environment(pod, container)
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_SCRIPT, "sh",
                   *[part for mount in mounts for part in mount], "--", *argv]
        with open(self.workdir / f"{pod.metadata.name}.log", "wb") as log_file:  # the child keeps its own
            process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        return PodProcess(pod.metadata.name, process, scratch)

    def _environment(self, pod: client.V1Pod, container) -> dict[str, str]:
        """The container's variables as a kubelet resolves them: envFrom ConfigMaps and
        Secrets, then env (values, the downward API's fieldRef, configMapKeyRef, secretKeyRef);
        optional ones may be missing."""
        env = {}
        for source in container.env_from or []:
            ref = source.config_map_ref or source.secret_ref
            env.update(self._object_data("secret" if source.secret_ref else "configmap", ref.name,
                                         ref.optional))
        for variable in container.env or []:
            if variable.value_from is None:
                env[variable.name] = variable.value or ""
                continue
            if variable.value_from.field_ref is not None:
                env[variable.name] = _pod_field(pod, variable.value_from.field_ref.field_path)
                continue
            ref = variable.value_from.config_map_key_ref or variable.value_from.secret_key_ref
            data = self._object_data("secret" if variable.value_from.secret_key_ref else "configmap",
                                     ref.name, ref.optional)
            if ref.key in data:
                env[variable.name] = data[ref.key]
            elif not ref.optional:
                raise KeyError(f"{ref.name} has no key {ref.key}")
        return env

    def _object_data(self, kind: str, name: str, optional: bool | None) -> dict[str, str]:
        try:
            if kind == "secret":
                secret = self.core.read_namespaced_secret(name, self.namespace)
                return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            return dict(self.core.read_namespaced_config_map(name, self.namespace).data or {})
        except client.ApiException as error:
            if error.status == 404 and optional:
                return {}
            raise KeyError(f"{kind} {name}: {error.reason}") from error

    def _mounts(self, pod: client.V1Pod, container, scratch: Path) -> list[tuple[str, str]]:
        """Bind mounts, in order: (source, target). Besides the pod's volumes, the trees this
        process runs from (the "image": the virtualenv and the checkout) stay visible even
        where a volume covers them (an emptyDir at /tmp over a checkout under /tmp): they are
        bound to a staging directory first and back into place after the volumes."""
        volumes = {v.name: v for v in pod.spec.volumes or []}
        mounts = []
        for mount in container.volume_mounts or []:
            volume = volumes[mount.name]
            if volume.persistent_volume_claim:
                host = self.claims[volume.persistent_volume_claim.claim_name]
            elif volume.empty_dir is not None:
                host = scratch / mount.name
                host.mkdir()
            else:
                continue  # the projected service-account token: our Jobs do not use it
            mounts.append((str(host), mount.mount_path))
        image = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), REPOSITORY}
        hidden = sorted(str(path) for path in image
                        if any(path.is_relative_to(target) for _, target in mounts))
        stage = STAGING / pod.metadata.uid
        staged = [(path, str(stage / str(i))) for i, path in enumerate(hidden)]
        return staged + mounts + [(copy, path) for path, copy in staged]
