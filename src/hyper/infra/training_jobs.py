"""Launching rm-trainer Jobs: a local pool of subprocesses, or Kubernetes batch/v1 Jobs.

Both run the same entry point (`rm-trainer --spec PATH`); the spec and the data it names
move by reference (a path on the shared state volume), never inline. Kubernetes Jobs start
from the chart's base manifest (`helm/hyper/files/rm-trainer-job.yaml`) with the image and
scheduling for a CPU, GPU or TPU node pool set from `JobSettings`. A distributed spec (full
mode across the hosts of a multi-host TPU slice) becomes a JobSet (jobset.x-k8s.io) whose one
replicated Job runs a pod per host.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hyper.core.errors import HyperError, InvalidArgument
from hyper.infra import images, pod_resources
from hyper.method.run_spec import RunSpec

# In a source checkout the chart's own file; in an installed wheel (the images) its copy.
BASE_MANIFEST = next((path for path in (
    Path(__file__).resolve().parents[3] / "helm" / "hyper" / "files" / "rm-trainer-job.yaml",
    Path(sys.prefix) / "share" / "hyper" / "rm-trainer-job.yaml") if path.is_file()), None)
NAME = re.compile(r"[^a-z0-9-]+")
ACCELERATOR_VARIABLE = "HYPER_ACCELERATOR"  # what the trainer checks JAX's devices against


class JobFailed(HyperError):
    pass


class JobSettings(BaseSettings):
    """How a training Job is scheduled (HYPER_JOB_* variables, or flags)."""

    model_config = SettingsConfigDict(env_prefix="HYPER_JOB_")

    image: str = Field("", description="the trainer image; empty = the accelerator's (cpu_image, gpu_image, "
                                        "tpu_image: the jaxlib that drives that device)")
    cpu_image: str = Field(images.image("rm-trainer"), description="the chart's trainer.image")
    gpu_image: str = Field(images.image("rm-trainer-cuda"), description="the chart's trainer.gpu.image")
    tpu_image: str = Field(images.image("rm-trainer-tpu"), description="the chart's trainer.tpu.image")
    namespace: str = Field("default", description="the release's namespace")
    accelerator: Literal["cpu", "gpu", "tpu"] = Field("cpu", description="the node pool a Job is scheduled on")
    gpu_count: int = Field(1, ge=1, description="GPUs per pod")
    gpu_node_selector: dict[str, str] = Field({"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
                                              description="the GPU node pool's labels")
    tpu_accelerator: str = Field("tpu-v5-lite-podslice", description="the TPU slice's GKE accelerator")
    tpu_topology: str = Field("2x4", description="the TPU slice's topology")
    tpu_hosts: int = Field(1, ge=1, description="TPU VMs in the slice (more than one: a JobSet)")
    tpu_chips: int = Field(8, ge=1, description="TPU chips per host; hosts x chips must be the topology's chips")
    backoff_limit: int = Field(3, ge=0, description="retries of a failed pod")
    ttl_seconds_after_finished: int = Field(86400, ge=0, description="how long a finished Job is kept")
    release: str = Field("hyper", description="the Helm release whose ConfigMap (ppm address, TLS), Secret "
                                              "(run-recording token) and state claim the pods use")
    state_claim: str = Field("", description="the state volume's claim; empty = <release>-state")
    tls_secret: str = Field("", description="the release's gRPC TLS Secret, when it has one (tls.secretName, or "
                                            "<release>-tls-rm-trainer with tls.perComponent)")
    cpu: str = Field("", pattern=pod_resources.CPU, description="CPU each trainer pod requests (2, 500m); empty = "
                                                                 "the accelerator's default")
    memory: str = Field("", pattern=pod_resources.MEMORY, description="memory each trainer pod requests, its limit "
                                                                       "twice that; empty = the accelerator's default")
    local_workers: int = Field(1, ge=1, description="local backend: Jobs run at a time")

    @model_validator(mode="after")
    def _tpu_slice_adds_up(self) -> JobSettings:
        """GKE schedules a slice only where hosts x chips per host is the topology's chip count."""
        if self.accelerator != "tpu":
            return self
        try:
            chips = math.prod(int(side) for side in self.tpu_topology.split("x"))
        except ValueError:
            raise ValueError(f"tpu_topology {self.tpu_topology!r}: expected sides joined by x, "
                             "e.g. 2x4 or 2x2x4") from None
        if self.tpu_hosts * self.tpu_chips != chips:
            raise ValueError(f"tpu_hosts x tpu_chips = {self.tpu_hosts} x {self.tpu_chips} must be the "
                             f"{chips} chips of topology {self.tpu_topology}")
        return self

    @property
    def trainer_image(self) -> str:
        images = {"cpu": self.cpu_image, "gpu": self.gpu_image, "tpu": self.tpu_image}
        return self.image or images[self.accelerator]


def job_settings(**overrides) -> JobSettings:
    """The environment's HYPER_JOB_* settings with these overrides; a bad value is an
    InvalidArgument naming its field."""
    try:
        return JobSettings(**overrides)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"]) or "job settings"
        raise InvalidArgument(field, problem["msg"].removeprefix("Value error, ")) from error


def job_name(run: str, limit: int = 63) -> str:
    """A DNS-1123 name for a run: lower case, digits and '-', at most `limit` characters."""
    return ("rm-trainer-" + NAME.sub("-", run.lower())).strip("-")[:limit].rstrip("-")


def _accelerator(pod: dict, container: dict, settings: JobSettings) -> None:
    next(v for v in container["env"] if v["name"] == ACCELERATOR_VARIABLE)["value"] = settings.accelerator
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
    container.update(image=settings.trainer_image, args=["--spec", spec_path])
    _release(pod, container, settings)
    _accelerator(pod, container, settings)
    pod_resources.request(container, settings.cpu, settings.memory)
    return manifest


# JobSet's API (https://github.com/kubernetes-sigs/jobset), as CustomObjectsApi takes it.
JOBSET_GROUP, JOBSET_VERSION, JOBSET_PLURAL = "jobset.x-k8s.io", "v1alpha2", "jobsets"
SLICE = "slice"  # the JobSet's one replicated Job: a pod per host of the TPU slice
# Pods of one slice on one node pool: GKE makes a multi-host TPU slice a node pool.
EXCLUSIVE_TOPOLOGY = {"alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool"}


def jobset_name(run: str, hosts: int) -> str:
    """A name short enough for JobSet's pod names, <name>-slice-0-<host>-<5 random>, to be
    DNS labels of at most 63 characters (JobSet's admission webhook refuses longer ones)."""
    return job_name(run, 63 - len(f"-{SLICE}-0-{hosts - 1}-abcde"))


def render_jobset(run: str, spec_path: str, settings: JobSettings, experiment: str = "") -> dict:
    """The JobSet for a distributed spec on a multi-host TPU slice: the rendered Job as the
    template of one replicated Job with a pod per host (Indexed, so that each pod knows its
    host index) and DNS hostnames behind a headless Service, from which GKE gives each pod
    TPU_WORKER_ID and TPU_WORKER_HOSTNAMES and jax.distributed.initialize() finds the others."""
    if settings.accelerator != "tpu" or settings.tpu_hosts < 2:
        raise InvalidArgument("accelerator", "a distributed spec (full.distributed) runs on a multi-host TPU "
                              "slice: --accelerator tpu with --tpu-hosts of 2 or more (and the slice's "
                              "--tpu-topology and --tpu-chips per host)")
    job = render_job(run, spec_path, settings, experiment)
    job_spec = job["spec"]
    ttl = job_spec.pop("ttlSecondsAfterFinished")
    # One host failing breaks the slice: no retry of that pod alone, the JobSet restarts them all.
    job_spec.update(parallelism=settings.tpu_hosts, completions=settings.tpu_hosts,
                    completionMode="Indexed", backoffLimit=0)
    metadata = {**job["metadata"], "name": jobset_name(run, settings.tpu_hosts),
                "annotations": dict(EXCLUSIVE_TOPOLOGY)}
    return {"apiVersion": f"{JOBSET_GROUP}/{JOBSET_VERSION}", "kind": "JobSet", "metadata": metadata,
            "spec": {"replicatedJobs": [{"name": SLICE, "replicas": 1, "template": {"spec": job_spec}}],
                     "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
                     "failurePolicy": {"maxRestarts": settings.backoff_limit},
                     "ttlSecondsAfterFinished": ttl}}


def render_spec(spec_path: Path, path_in_cluster: str, settings: JobSettings) -> dict:
    """The manifest that runs one spec file: a Job, or a JobSet when the spec is distributed."""
    try:
        spec = RunSpec.load(spec_path)
    except (OSError, ValueError) as error:
        raise InvalidArgument("spec", f"{spec_path}: {error}") from error
    render = render_jobset if spec.distributed else render_job
    return render(f"{spec.experiment}-{spec_path.stem}", path_in_cluster, settings, spec.experiment)


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
        command = [sys.executable, "-m", "hyper_rm_trainer.job", "--spec", str(spec)]
        if log_dir is None:
            return subprocess.run(command).returncode
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{spec.parent.name}-{spec.stem}.log", "ab") as log:
            return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, spec_paths))


def submit_kubernetes(manifests: list[dict], namespace: str) -> list[str]:
    """Creates the Jobs, and JobSets through the custom objects API (JobSet must be installed
    on the cluster), through the Kubernetes API (kubeconfig, or in-cluster credentials)."""
    from kubernetes import client, config

    try:
        config.load_kube_config()
    except config.ConfigException:
        config.load_incluster_config()
    names = []
    for manifest in manifests:
        if manifest["kind"] == "JobSet":
            created = client.CustomObjectsApi().create_namespaced_custom_object(
                JOBSET_GROUP, JOBSET_VERSION, namespace, JOBSET_PLURAL, manifest)
            names.append(created["metadata"]["name"])
        else:
            names.append(client.BatchV1Api().create_namespaced_job(namespace, manifest).metadata.name)
    return names
