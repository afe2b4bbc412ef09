"""Launching rm-trainer Jobs: a local pool of subprocesses, or Kubernetes batch/v1 Jobs.

Both run the same entry point (`rm-trainer --spec PATH`); the spec and the data it names
move by reference (a path on the shared state volume), never inline. Kubernetes Jobs start
from the chart's base manifest (`helm/hyper/files/rm-trainer-job.yaml`) with scheduling for a
CPU, GPU or TPU node pool set from `JobSettings`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hyper.errors import HyperError, InvalidArgument
from hyper.run_spec import RunSpec

# In a source checkout the chart's own file; in an installed wheel (the images) its copy.
BASE_MANIFEST = next((path for path in (
    Path(__file__).resolve().parents[2] / "helm" / "hyper" / "files" / "rm-trainer-job.yaml",
    Path(sys.prefix) / "share" / "hyper" / "rm-trainer-job.yaml") if path.is_file()), None)
NAME = re.compile(r"[^a-z0-9-]+")


class JobFailed(HyperError):
    pass


class JobSettings(BaseSettings):
    """How a training Job is scheduled (HYPER_JOB_* variables, or flags)."""

    model_config = SettingsConfigDict(env_prefix="HYPER_JOB_")

    image: str = "ghcr.io/example/hyper-rm-trainer:0.1.0"
    namespace: str = "default"
    accelerator: Literal["cpu", "gpu", "tpu"] = "cpu"
    gpu_count: int = Field(1, ge=1)
    gpu_node_selector: dict[str, str] = {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    tpu_accelerator: str = "tpu-v5-lite-podslice"
    tpu_topology: str = "2x4"
    tpu_chips: int = Field(8, ge=1)
    backoff_limit: int = Field(3, ge=0)
    ttl_seconds_after_finished: int = Field(86400, ge=0)
    # The Helm release the Jobs belong to: its ConfigMap (ppm address, TLS), Secret (the
    # run-recording token) and state volume claim are <release>-config|-secrets|-state.
    release: str = "hyper"
    state_claim: str = ""  # empty: <release>-state
    tls_secret: str = ""   # the release's gRPC TLS Secret, when it has one (tls.secretName)
    local_workers: int = Field(1, ge=1)


def job_name(run: str) -> str:
    """A DNS-1123 name for a run: lower case, digits and '-', at most 63 characters."""
    return ("rm-trainer-" + NAME.sub("-", run.lower())).strip("-")[:63].rstrip("-")


def _accelerator(pod: dict, container: dict, settings: JobSettings) -> None:
    if settings.accelerator == "gpu":
        container["resources"].setdefault("limits", {})["nvidia.com/gpu"] = settings.gpu_count
        pod["nodeSelector"] = dict(settings.gpu_node_selector)
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    elif settings.accelerator == "tpu":
        for kind in ("requests", "limits"):
            container["resources"].setdefault(kind, {})["google.com/tpu"] = settings.tpu_chips
        pod["nodeSelector"] = {"cloud.google.com/gke-tpu-accelerator": settings.tpu_accelerator,
                               "cloud.google.com/gke-tpu-topology": settings.tpu_topology}
        pod["tolerations"] = [{"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"}]


TLS_DIR = "/etc/hyper/tls"


def _release(pod: dict, container: dict, settings: JobSettings) -> None:
    """Points the Job at its release's ConfigMap, Secret, state claim and TLS Secret."""
    container["envFrom"][0]["configMapRef"]["name"] = f"{settings.release}-config"
    for variable in container["env"]:
        if "valueFrom" in variable:
            variable["valueFrom"]["secretKeyRef"]["name"] = f"{settings.release}-secrets"
    pod["volumes"][0]["persistentVolumeClaim"]["claimName"] = (settings.state_claim
                                                                or f"{settings.release}-state")
    if settings.tls_secret:
        pod["volumes"].append({"name": "tls", "secret": {"secretName": settings.tls_secret}})
        container["volumeMounts"].append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})


def render_job(run: str, spec_path: str, settings: JobSettings, experiment: str = "") -> dict:
    """The Job manifest for one run spec: the chart's base manifest with this run filled in."""
    if BASE_MANIFEST is None:
        raise HyperError("the base Job manifest (rm-trainer-job.yaml) is neither in a source "
                         "checkout nor under <prefix>/share/hyper: reinstall the package")
    manifest = yaml.safe_load(BASE_MANIFEST.read_text())
    labels = {"app.kubernetes.io/instance": settings.release,
              "hyper.dev/run": NAME.sub("-", run.lower())[:63].strip("-")}
    if experiment:
        labels["hyper.dev/experiment"] = NAME.sub("-", experiment.lower())[:63].strip("-")
    manifest["metadata"].update(name=job_name(run), namespace=settings.namespace)
    manifest["metadata"]["labels"].update(labels)
    spec = manifest["spec"]
    spec.update(backoffLimit=settings.backoff_limit,
                ttlSecondsAfterFinished=settings.ttl_seconds_after_finished)
    spec["template"]["metadata"]["labels"].update(labels)
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    container.update(image=settings.image, args=["--spec", spec_path])
    _release(pod, container, settings)
    _accelerator(pod, container, settings)
    return manifest


def write_manifests(manifests: list[dict], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for manifest in manifests:
        path = directory / f"{manifest['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        paths.append(path)
    return paths


def run_local(spec_paths: list[Path], workers: int, log_dir: Path | None = None) -> list[int]:
    """The local backend: each spec through the Job's own entry point, `workers` at a time,
    logging to <log_dir>/<spec>.log (or to this terminal, to show progress, when None).
    Returns the exit codes (0 = every run of that spec recorded)."""

    def run(spec: Path) -> int:
        command = [sys.executable, "-m", "hyper.rm_trainer.job", "--spec", str(spec)]
        if log_dir is None:
            return subprocess.run(command).returncode
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{spec.parent.name}-{spec.stem}.log", "ab") as log:
            return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, spec_paths))


def submit_kubernetes(manifests: list[dict], namespace: str) -> list[str]:
    """Creates the Jobs through the Kubernetes API (kubeconfig, or in-cluster credentials)."""
    from kubernetes import client, config

    try:
        config.load_kube_config()
    except config.ConfigException:
        config.load_incluster_config()
    batch = client.BatchV1Api()
    return [batch.create_namespaced_job(namespace, manifest).metadata.name for manifest in manifests]


def spec_run_name(spec_path: Path) -> tuple[str, str]:
    """(run name, experiment) of a spec file, for Job names and labels."""
    try:
        spec = RunSpec.load(spec_path)
    except (OSError, ValueError) as error:
        raise InvalidArgument("spec", f"{spec_path}: {error}") from error
    return f"{spec.experiment}-{spec_path.stem}", spec.experiment
