
import pytest
import yaml

from hyper.cli.main import main
from hyper.core.errors import InvalidArgument
from hyper.infra.training_jobs import BASE_MANIFEST, JobSettings, job_name, job_settings, render_job
from hyper.method.run_spec import RunSpec


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
    assert container["resources"] == base["spec"]["template"]["spec"]["containers"][0]["resources"]
    small = render_job("exp-1-spec", "/spec.json", JobSettings(cpu="250m", memory="1Gi"), "exp-1")
    assert small["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}  # a small node's trainer


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
