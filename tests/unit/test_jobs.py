import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hyper_rm_trainer.devices import EXIT_NO_ACCELERATOR

from hyper.api import serving
from hyper.api.clients import PPMClient
from hyper.cli.main import main
from hyper.core.errors import InvalidArgument
from hyper.infra.training_jobs import BASE_MANIFEST, JobSettings, job_name, job_settings, render_job
from hyper.method.run_spec import FullSpec, RunSpec, save_mixes
from hyper.workflows.training_loop import write_plain_jsonl
from tests.service.test_security import ppm_server


def test_job_names_are_dns_labels():
    name = job_name("Loop_ABC.123/" + "x" * 80)
    assert len(name) <= 63 and name == name.lower() and not name.endswith("-")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_a_rendered_job_is_the_charts_base_manifest_with_the_run_filled_in():
    base = yaml.safe_load(BASE_MANIFEST.read_text())
    job = render_job("exp-1-spec", "/var/lib/hyper/experiments/exp-1/spec.json",
                     JobSettings(image="registry/hyper:1", backoff_limit=2), "exp-1")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert job["kind"] == "Job" and job["apiVersion"] == base["apiVersion"] == "batch/v1"
    assert container["command"] == ["rm-trainer"] and container["image"] == "registry/hyper:1"
    assert container["args"] == ["--spec", "/var/lib/hyper/experiments/exp-1/spec.json"]
    assert job["spec"]["backoffLimit"] == 2
    assert job["metadata"]["labels"]["hyper.dev/experiment"] == "exp-1"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "nodeSelector" not in job["spec"]["template"]["spec"]


@pytest.mark.parametrize("accelerator, resource, selector", [
    ("tpu", "google.com/tpu", "cloud.google.com/gke-tpu-topology"),
    ("gpu", "nvidia.com/gpu", "cloud.google.com/gke-accelerator"),
])
def test_accelerator_jobs_ask_for_the_device_and_its_node_pool(accelerator, resource, selector):
    job = render_job("r", "/spec.json", JobSettings(accelerator=accelerator))
    pod = job["spec"]["template"]["spec"]
    assert resource in pod["containers"][0]["resources"]["limits"]
    assert selector in pod["nodeSelector"]
    assert pod["tolerations"][0]["key"] == resource


@pytest.mark.parametrize("accelerator, image", [
    ("cpu", "ghcr.io/example/hyper-rm-trainer:0.1.0"),
    ("gpu", "ghcr.io/example/hyper-rm-trainer-cuda:0.1.0"),
    ("tpu", "ghcr.io/example/hyper-rm-trainer-tpu:0.1.0"),
])
def test_a_job_runs_its_accelerators_image_and_tells_the_trainer_which_device_to_expect(accelerator, image):
    container = render_job("r", "/spec.json", JobSettings(accelerator=accelerator))["spec"]["template"]["spec"][
        "containers"][0]
    assert container["image"] == image
    assert {"name": "HYPER_ACCELERATOR", "value": accelerator} in container["env"]
    explicit = JobSettings(accelerator=accelerator, image="registry/mine:2")
    assert render_job("r", "/spec.json", explicit)["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry/mine:2"


def test_hyper_jobs_render_picks_the_image_of_accelerator(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(RunSpec(experiment="exp", pool="pool.jsonl", mixes="mixes.npz").model_dump_json())
    main(["jobs", "render", str(spec), "--accelerator", "gpu", "--out", str(tmp_path / "out")])
    [manifest] = (tmp_path / "out").glob("*.yaml")
    job = yaml.safe_load(manifest.read_text())
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/hyper-rm-trainer-cuda:0.1.0")


def test_a_tpu_slice_whose_hosts_and_chips_do_not_make_its_topology_is_refused_by_name():
    with pytest.raises(InvalidArgument, match=r"4 x 8 must be the 16 chips of topology 4x4"):
        job_settings(accelerator="tpu", tpu_topology="4x4", tpu_hosts=4, tpu_chips=8)
    with pytest.raises(InvalidArgument, match="tpu_topology 'four': expected sides joined by x"):
        job_settings(accelerator="tpu", tpu_topology="four")
    with pytest.raises(InvalidArgument, match="^tpu_hosts: "):
        job_settings(tpu_hosts=0)
    assert job_settings(accelerator="tpu", tpu_topology="4x4", tpu_hosts=4, tpu_chips=4).tpu_chips == 4


# The trainer's entry point against a real ppm: it trains where JAX has the accelerator the Job
# asks for (here the CPU) and stops before reading or recording anything where it has not.
def labels_spec(directory, dataset, ppm_address: str, **full) -> Path:
    pool = [dataclasses.replace(i, labels={"human": i.labels["human"], "ai": i.labels["human"]})
            for i in dataset.instances[:20]]
    write_plain_jsonl(directory / "pool.jsonl", pool)
    save_mixes(directory / "mixes.npz", ["acc-r0", "acc-r1"], [i.id for i in pool],
               np.array([[True] * 20, [False] * 20]), np.zeros((2, 2)), ["f0", "f1"])
    spec = RunSpec(experiment=directory.name, pool="pool.jsonl", mixes="mixes.npz", mode="labels",
                   ppm_address=ppm_address, **full)
    (directory / "spec.json").write_text(spec.model_dump_json())
    return directory / "spec.json"


def rm_trainer(spec: Path, accelerator: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyper_rm_trainer.job", "--spec", str(spec)],
                          env=os.environ | {"HYPER_ACCELERATOR": accelerator}, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def ppm(tmp_path_factory):
    with ppm_server(tmp_path_factory.mktemp("ppm")) as settings:
        yield settings


def recorded(ppm_settings, experiment: str) -> list[tuple[str, str]]:
    with serving.channel(ppm_settings.address("ppm"), ppm_settings) as channel:
        return [(r.run_id, r.state) for r in PPMClient(channel).list_runs(experiment)]


@pytest.mark.parametrize("accelerator, image", [("gpu", "hyper-rm-trainer-cuda"), ("tpu", "hyper-rm-trainer-tpu")])
def test_a_job_for_a_gpu_or_tpu_that_jax_cannot_see_fails_loudly_instead_of_training_on_the_cpu(
        tmp_path, hh_dataset, ppm, accelerator, image):
    spec = labels_spec(tmp_path, hh_dataset, ppm.address("ppm"))
    done = rm_trainer(spec, accelerator)
    assert done.returncode == EXIT_NO_ACCELERATOR == 3
    assert (f"error: HYPER_ACCELERATOR={accelerator}: this Job was scheduled for a {accelerator}, but JAX "
            in done.stderr)
    assert "sees only cpu devices" in done.stderr and f"Run the {image} image" in done.stderr
    assert recorded(ppm, tmp_path.name) == []  # nothing trained, nothing recorded


def test_the_same_job_on_the_cpu_it_asks_for_trains_and_records_its_runs(tmp_path, hh_dataset, ppm):
    spec = labels_spec(tmp_path, hh_dataset, ppm.address("ppm"))
    done = rm_trainer(spec, "cpu")
    assert done.returncode == 0, done.stderr
    assert recorded(ppm, tmp_path.name) == [("acc-r0", "succeeded"), ("acc-r1", "succeeded")]


def test_a_distributed_spec_outside_a_slice_fails_with_the_reason(tmp_path, hh_dataset, ppm):
    spec = labels_spec(tmp_path, hh_dataset, ppm.address("ppm"))
    distributed = RunSpec.load(spec).model_copy(update={"mode": "full", "full": FullSpec(model_dir="m",
                                                                                         distributed=True)})
    spec.write_text(distributed.model_dump_json())
    done = rm_trainer(spec, "cpu")
    assert done.returncode == EXIT_NO_ACCELERATOR
    assert "error: full.distributed: JAX found no slice of hosts to join" in done.stderr
    assert recorded(ppm, tmp_path.name) == []


def test_an_unknown_accelerator_is_named(tmp_path, hh_dataset, ppm):
    done = rm_trainer(labels_spec(tmp_path, hh_dataset, ppm.address("ppm")), "cuda")
    assert done.returncode == EXIT_NO_ACCELERATOR and "error: HYPER_ACCELERATOR: Input should be" in done.stderr


def test_a_missing_spec_is_named_without_a_traceback(tmp_path):
    done = rm_trainer(tmp_path / "absent.json", "cpu")
    assert done.returncode == 2 and f"error: spec {tmp_path / 'absent.json'}: " in done.stderr
    assert "Traceback" not in done.stderr
