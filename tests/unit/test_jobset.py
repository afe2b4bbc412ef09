"""Distributed specs on a multi-host TPU slice: the JobSet `hyper jobs` renders, validated against
the JobSet CRD's own schema (tests/data, vendored from kubernetes-sigs/jobset v0.12.0), and the
call that creates it through the Kubernetes Python client."""

from __future__ import annotations

import gzip
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml

from hyper.core.errors import InvalidArgument
from hyper.infra.training_jobs import JobSettings, render_job, render_spec, submit_kubernetes
from hyper.method.run_spec import FullSpec, RunSpec

CRD = Path(__file__).resolve().parents[1] / "data" / "jobset.x-k8s.io_jobsets-v0.12.0.yaml.gz"
SLICE = JobSettings(accelerator="tpu", tpu_topology="4x4", tpu_hosts=4, tpu_chips=4, namespace="train")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def strict(schema: dict) -> dict:
    """The schema with unknown fields refused, as the API server's strict field validation
    refuses them (a structural schema alone only prunes them)."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    crd = yaml.load(gzip.decompress(CRD.read_bytes()), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    assert crd["spec"]["group"] == "jobset.x-k8s.io" and version["served"]
    return jsonschema.Draft4Validator(strict(version["schema"]["openAPIV3Schema"]))


def distributed_spec(directory: Path, experiment: str = "slice-exp") -> Path:
    spec = RunSpec(experiment=experiment, pool="pool.jsonl", mixes="mixes.npz", mode="full",
                   full=FullSpec(model_dir="/var/lib/hyper/models/llama", distributed=True))
    path = directory / "spec.json"
    path.write_text(spec.model_dump_json())
    return path


def test_a_distributed_spec_renders_a_jobset_that_its_crds_schema_accepts(tmp_path, validator):
    jobset = render_spec(distributed_spec(tmp_path), "/var/lib/hyper/experiments/slice-exp/spec.json", SLICE)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(jobset)]
    assert errors == []
    assert (jobset["apiVersion"], jobset["kind"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet")
    assert jobset["metadata"]["namespace"] == "train"


def test_the_schema_check_refuses_what_the_api_server_would(tmp_path, validator):
    jobset = render_spec(distributed_spec(tmp_path), "/spec.json", SLICE)
    misspelt = json.loads(json.dumps(jobset))
    misspelt["spec"]["replicatedJob"] = misspelt["spec"].pop("replicatedJobs")
    wrong_type = json.loads(json.dumps(jobset))
    wrong_type["spec"]["replicatedJobs"][0]["template"]["spec"]["parallelism"] = "four"
    no_containers = json.loads(json.dumps(jobset))
    del no_containers["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"]
    for bad in (misspelt, wrong_type, no_containers):
        assert list(validator.iter_errors(bad)), bad["spec"].keys()


def test_the_jobset_runs_a_pod_per_host_of_the_slice_with_the_charts_job_as_template(tmp_path):
    jobset = render_spec(distributed_spec(tmp_path), "/spec.json", SLICE)
    [replicated] = jobset["spec"]["replicatedJobs"]
    job = replicated["template"]["spec"]
    assert replicated["replicas"] == 1
    assert (job["parallelism"], job["completions"], job["completionMode"]) == (4, 4, "Indexed")
    assert job["backoffLimit"] == 0 and jobset["spec"]["failurePolicy"] == {"maxRestarts": SLICE.backoff_limit}
    # DNS hostnames behind a headless Service: what GKE's TPU_WORKER_HOSTNAMES and JAX rely on
    assert jobset["spec"]["network"] == {"enableDNSHostnames": True, "publishNotReadyAddresses": True}
    assert jobset["metadata"]["annotations"] == {
        "alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool"}
    pod = job["template"]["spec"]
    single_host = render_job("x", "/spec.json", SLICE)["spec"]["template"]["spec"]
    assert pod == single_host  # the chart's base Job: the same container, volumes, security
    assert pod["nodeSelector"] == {"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                                   "cloud.google.com/gke-tpu-topology": "4x4"}
    container = pod["containers"][0]
    assert container["resources"]["limits"]["google.com/tpu"] == 4  # chips per host
    assert container["image"] == SLICE.tpu_image
    assert {"name": "HYPER_ACCELERATOR", "value": "tpu"} in container["env"]
    assert container["args"] == ["--spec", "/spec.json"]


def test_jobset_names_leave_room_for_its_pod_names(tmp_path):
    spec = distributed_spec(tmp_path, experiment="a-very-long-experiment-name-" + "x" * 60)
    wide = SLICE.model_copy(update={"tpu_topology": "16x16", "tpu_hosts": 64})
    name = render_spec(spec, "/spec.json", wide)["metadata"]["name"]
    longest_pod = f"{name}-slice-0-63-abcde"  # JobSet's webhook checks this one
    assert len(longest_pod) <= 63 and DNS_1035.match(longest_pod), longest_pod


@pytest.mark.parametrize("settings", [
    JobSettings(accelerator="gpu"),
    JobSettings(accelerator="tpu"),  # a one-host slice: nothing to join
])
def test_a_distributed_spec_off_a_multi_host_tpu_slice_is_refused_by_name(tmp_path, settings):
    with pytest.raises(InvalidArgument, match="^accelerator: a distributed spec"):
        render_spec(distributed_spec(tmp_path), "/spec.json", settings)


def test_a_spec_that_is_not_distributed_stays_a_job(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(RunSpec(experiment="e", pool="p.jsonl", mixes="m.npz", mode="full",
                            full=FullSpec(model_dir="m")).model_dump_json())
    assert render_spec(spec, "/spec.json", SLICE)["kind"] == "Job"


class APIServer(BaseHTTPRequestHandler):
    """Stands in for a kube-apiserver with JobSet installed (the test cluster here has no JobSet
    controller or CRD): records each request and answers as the API server does, with the object."""

    requests: list[tuple[str, str, dict]] = []

    def do_POST(self):  # noqa: N802 - the name http.server calls
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("POST", self.path, body))
        answer = json.dumps(body).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_hyper_jobs_submit_creates_a_jobset_through_the_custom_objects_api(tmp_path, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), APIServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "test", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    # (the client reads KUBECONFIG once, when first imported: another test may have imported it)
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    try:
        jobset = render_spec(distributed_spec(tmp_path), "/spec.json", SLICE)
        job = render_job("single", "/spec.json", JobSettings(namespace="train"))
        assert submit_kubernetes([jobset, job], "train") == [jobset["metadata"]["name"], "rm-trainer-single"]
    finally:
        server.shutdown()
    assert [(method, path) for method, path, _ in APIServer.requests] == [
        ("POST", "/apis/jobset.x-k8s.io/v1alpha2/namespaces/train/jobsets"),
        ("POST", "/apis/batch/v1/namespaces/train/jobs")]
    assert APIServer.requests[0][2] == jobset
