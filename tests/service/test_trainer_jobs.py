"""The rm-trainer Job as Kubernetes runs it (a subprocess here) against a real ppm server over
loopback: it trains on the device it was scheduled for, or refuses loudly, and records its runs."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.local import ppm_server
from hyper.api import serving
from hyper.api.clients import PPMClient
from hyper.method.run_spec import FullSpec, RunSpec, save_mixes
from hyper.workflows.training_loop import write_plain_jsonl
from hyper_rm_trainer.devices import EXIT_NO_ACCELERATOR

pytestmark = pytest.mark.service


def labels_spec(directory, dataset, ppm_address: str, **fields) -> Path:
    pool = [dataclasses.replace(i, labels={"human": i.labels["human"], "ai": i.labels["human"]})
            for i in dataset.instances[:20]]
    write_plain_jsonl(directory / "pool.jsonl", pool)
    save_mixes(directory / "mixes.npz", ["acc-r0", "acc-r1"], [i.id for i in pool],
               np.array([[True] * 20, [False] * 20]), np.zeros((2, 2)), ["f0", "f1"])
    spec = RunSpec(experiment=directory.name, pool="pool.jsonl", mixes="mixes.npz", mode="labels",
                   ppm_address=ppm_address, **fields)
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
    return [(r.run_id, r.state) for r in recorded_runs(ppm_settings, experiment)]


def recorded_runs(ppm_settings, experiment: str) -> list:
    with serving.channel(ppm_settings.address("ppm"), ppm_settings) as channel:
        return PPMClient(channel).list_runs(experiment)


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
    spec = labels_spec(tmp_path, hh_dataset, ppm.address("ppm"), feature_set_version="tags-v7")
    done = rm_trainer(spec, "cpu")
    assert done.returncode == 0, done.stderr
    runs = recorded_runs(ppm, tmp_path.name)
    assert [(r.run_id, r.state, r.feature_set_version) for r in runs] == [
        ("acc-r0", "succeeded", "tags-v7"), ("acc-r1", "succeeded", "tags-v7")]


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
