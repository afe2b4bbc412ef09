"""Tagging a large dataset in shards: local worker processes, or one Kubernetes Job.

Both run the same worker (`hyper-tag-shard`, services/tagger/hyper_tagger/shard.py), which writes each
shard's values into the feature cache that Route's tagger reads. The Job starts from the
chart's base manifest (`helm/hyper/files/tagger-job.yaml`): an Indexed Job of `shards`
completions where the cluster has Indexed Jobs, a Job whose pods claim shards from a run
directory on the state volume where it does not (the worker tells the two apart).
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hyper.core.errors import HyperError, InvalidArgument
from hyper.infra import pod_resources
from hyper.infra.images import image
from hyper.infra.training_jobs import JobFailed

# In a source checkout the chart's own file; in an installed wheel (the images) its copy.
BASE_MANIFEST = next((path for path in (
    Path(__file__).resolve().parents[3] / "helm" / "hyper" / "files" / "tagger-job.yaml",
    Path(sys.prefix) / "share" / "hyper" / "tagger-job.yaml") if path.is_file()), None)
NAME = re.compile(r"[^a-z0-9-]+")
RUNS_DIR = "tag-runs"  # under the state volume (or the local home): one directory per run


class TagJobSettings(BaseSettings):
    """Where and how a tagging Job runs (HYPER_TAG_JOB_* variables, or flags)."""

    model_config = SettingsConfigDict(env_prefix="HYPER_TAG_JOB_")

    image: str = Field(image("tagger"), description="the tagger image the workers run")
    namespace: str = Field("default", description="the release's namespace")
    release: str = Field("hyper", description="the Helm release whose ConfigMap (models, backend), Secret "
                                              "(redis-url) and state claim the pods use")
    state_claim: str = Field("", description="the state volume's claim; empty = <release>-state")
    backoff_limit: int = Field(6, ge=0, description="retries of a failed pod")
    ttl_seconds_after_finished: int = Field(86400, ge=0, description="how long a finished Job is kept")
    lease_seconds: float = Field(60.0, gt=0, description="a shard claim untouched this long is taken over")
    cpu: str = Field("", pattern=pod_resources.CPU, description="CPU each worker pod requests (2, 500m); "
                                                                 "empty = the manifest's 2")
    memory: str = Field("", pattern=pod_resources.MEMORY, description="memory each worker pod requests, its limit "
                                                                       "twice that; empty = the manifest's 4Gi")


@dataclass(frozen=True)
class TagRun:
    """One tagging run: the dataset as the workers read it, and how it is cut."""

    name: str
    dataset: str  # the path the workers open (on the cluster: on the state volume)
    shards: int
    parallelism: int
    format: str = "auto"
    columns: tuple[str, ...] = ()  # FIELD=COLUMN
    skip_bad_rows: bool = False

    def worker_args(self, run_dir: str) -> list[str]:
        """The worker's arguments; `run_dir` holds the workers' claims and done records."""
        args = ["--dataset", self.dataset, "--shards", str(self.shards), "--run-dir", run_dir,
                "--format", self.format]
        args += [part for column in self.columns for part in ("--column", column)]
        return args + (["--skip-bad-rows"] if self.skip_bad_rows else [])


def run_name(dataset: str) -> str:
    """A DNS-1123 name, new for each run: tag-<file stem>-<random>."""
    stem = NAME.sub("-", Path(dataset).name.split(".")[0].lower()).strip("-")[:40].strip("-")
    return "-".join(part for part in ("tag", stem, secrets.token_hex(3)) if part)


def check_counts(shards: int, parallelism: int) -> None:
    if shards < 1:
        raise InvalidArgument("--shards", f"{shards} is not a positive count")
    if parallelism < 1:
        raise InvalidArgument("--parallelism", f"{parallelism} is not a positive count")


def render_tag_job(run: TagRun, settings: TagJobSettings) -> dict:
    """The Job manifest of a run: the chart's base manifest with the run filled in."""
    if BASE_MANIFEST is None:
        raise HyperError("the base Job manifest (tagger-job.yaml) is neither in a source "
                         "checkout nor under <prefix>/share/hyper: reinstall the package")
    check_counts(run.shards, run.parallelism)
    # The base manifest names the release's objects RELEASE-config, RELEASE-secrets, RELEASE-state.
    manifest = yaml.safe_load(BASE_MANIFEST.read_text().replace("RELEASE-", f"{settings.release}-"))
    labels = {"app.kubernetes.io/instance": settings.release, "hyper.dev/tag-run": run.name}
    manifest["metadata"].update(name=run.name, namespace=settings.namespace)
    manifest["metadata"]["labels"].update(labels)
    spec = manifest["spec"]
    spec.update(completions=run.shards, parallelism=min(run.parallelism, run.shards),
                backoffLimit=settings.backoff_limit, ttlSecondsAfterFinished=settings.ttl_seconds_after_finished)
    spec["template"]["metadata"]["labels"].update(labels)
    pod = spec["template"]["spec"]
    if settings.state_claim:
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"] = settings.state_claim
    container = pod["containers"][0]
    state = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "state")
    container.update(image=settings.image, args=run.worker_args(f"{state}/{RUNS_DIR}/{run.name}") + [
        "--lease-seconds", f"{settings.lease_seconds:g}", "--require-redis"])
    pod_resources.request(container, settings.cpu, settings.memory)
    return manifest


def job_progress(job) -> str:
    status = job.status
    return (f"{status.succeeded or 0} of {job.spec.completions} pods succeeded, {status.active or 0} "
            f"running, {status.failed or 0} failed")


def wait_for_job(name: str, namespace: str, report: Callable[[str], None], timeout: float,
                 poll_seconds: float = 2.0) -> None:
    """Reports the Job's progress as it changes until it is Complete; JobFailed if it fails
    (its backoffLimit spent) or outlasts `timeout`."""
    from kubernetes import client

    batch = client.BatchV1Api()
    deadline, last = time.monotonic() + timeout, ""
    while True:
        job = batch.read_namespaced_job_status(name, namespace)
        if (progress := job_progress(job)) != last:
            report(progress)
            last = progress
        conditions = {c.type for c in job.status.conditions or [] if c.status == "True"}
        if "Complete" in conditions:
            return
        if "Failed" in conditions:
            raise JobFailed(f"job {name} failed ({progress}); `kubectl logs -n {namespace} -l job-name={name}`")
        if time.monotonic() > deadline:
            raise JobFailed(f"job {name} still running after {timeout:.0f} s ({progress}); it goes on in "
                            f"the cluster: `kubectl get job -n {namespace} {name}`")
        time.sleep(poll_seconds)


def run_local(run: TagRun, run_dir: Path, lease_seconds: float, log_dir: Path) -> list[int]:
    """The local backend: `parallelism` worker processes pulling shards from `run_dir` (each
    loads the models once). Returns their exit codes."""
    check_counts(run.shards, run.parallelism)
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "hyper_tagger.shard", *run.worker_args(str(run_dir)),
               "--lease-seconds", f"{lease_seconds:g}"]
    workers = []
    for k in range(min(run.parallelism, run.shards)):
        with open(log_dir / f"{run.name}-worker{k}.log", "ab") as log:  # the child keeps its own handle
            workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    return [worker.wait() for worker in workers]
