import pytest
import yaml

from hyper.jobs import BASE_MANIFEST, JobSettings, job_name, render_job


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
