"""The Label Studio hand-off against a real Label Studio server (PyPI `label-studio`, in its own
virtualenv that `make test` installs; SQLite): create the project with the exported labelling
config through its API, import the exported tasks, submit annotations through the API, export,
and read the export back with `hyper tasks import`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from harness.local import REPO, free_ports
from harness.polling import server_process
from hyper.api.messages import RouteResult
from hyper.data import dataset_files

pytestmark = [pytest.mark.service, pytest.mark.label_studio]

PANDALM = REPO / "data" / "pandalm-testset.jsonl.gz"
TOKEN = "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9"


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    binary = os.environ.get("HYPER_LABEL_STUDIO_BIN", "")
    assert binary and Path(binary).is_file(), "Label Studio is missing: `make test` installs it (make label-studio)"
    data = tmp_path_factory.mktemp("label-studio")
    port = free_ports(1)[0]
    command = [binary, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
               "--username", "lead@example.com", "--password", "not-a-real-password-1", "--user-token", TOKEN,
               "--enable-legacy-api-token"]
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "HOME": str(data)}
    with server_process(command, env, f"http://127.0.0.1:{port}/health", data / "server.log", cwd=data):
        yield f"http://127.0.0.1:{port}"


def api(base: str, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"}
    request = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture(scope="module")
def route_file(tmp_path_factory):
    """A route of 40 PandaLM pairs (every fourth to humans), as `hyper route --out` writes one."""
    directory = tmp_path_factory.mktemp("route")
    instances = dataset_files.read_dataset(PANDALM).instances[:40]
    data = directory / "pairs.jsonl"
    from hyper.data.ingest import plain_record
    from hyper.labelling.hybrid_dataset import write_rows

    write_rows([plain_record(i) for i in instances], data, "jsonl")
    assignments = [{"id": i.id, "route": "human" if k % 4 == 0 else "ai", "gain": 0.0, "cost": 1.0}
                   for k, i in enumerate(instances)]
    route = RouteResult(
        route_id="ab" * 16, strategy="topk", n_instances=40, n_human=10, n_skipped_rows=0,
        n_by_source={"human": 10, "ai": 30}, n_forced_human=0, total_cost=10.0, budget_fraction=0.25,
        predicted_score=0.8, predicted_lower=0.7, predicted_upper=0.9, interval_level=0.9, ppm_version="v1",
        ppm_target="label_accuracy", warnings=[], assignments=assignments, budget_curve=[],
        ppm_skill={"spearman": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n_runs": 100},
        ai_source="gpt-3.5-turbo", dataset_ref={"path": str(data), "format": "plain"})
    path = directory / "routing.json"
    path.write_text(route.model_dump_json())
    return path, {i.id: i for i in instances}


def hyper(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyper.cli", *args], capture_output=True, text=True, timeout=300)


def test_tasks_go_through_a_real_label_studio_and_their_labels_come_back(label_studio, route_file, tmp_path):
    route, instances = route_file
    exported = hyper("tasks", "export", str(route), "--format", "label-studio", "--out", str(tmp_path / "tasks"))
    assert exported.returncode == 0, exported.stderr
    config = (tmp_path / "tasks" / "label_config.xml").read_text()
    project = api(label_studio, "POST", "/api/projects", {"title": "hyper route", "label_config": config})
    tasks = json.loads((tmp_path / "tasks" / "tasks.json").read_text())
    imported = api(label_studio, "POST", f"/api/projects/{project['id']}/import", tasks)
    assert imported["task_count"] == 10 and imported["prediction_count"] == sum("predictions" in t for t in tasks)

    served = api(label_studio, "GET", f"/api/tasks?project={project['id']}&page_size=100")
    served = served["tasks"] if isinstance(served, dict) else served
    submitted = {}
    for task in served:  # an annotator's answers: annotator1's labels, through the API
        item = task["data"]["item_id"]
        label = instances[item].labels["annotator1"]
        submitted[item] = label
        api(label_studio, "POST", f"/api/tasks/{task['id']}/annotations", {"result": [{
            "from_name": "preference", "to_name": "prompt", "type": "choices", "value": {"choices": [label]}}]})
    export = api(label_studio, "GET", f"/api/projects/{project['id']}/export?exportType=JSON")
    (tmp_path / "export.json").write_text(json.dumps(export))

    merged = hyper("tasks", "import", str(tmp_path / "export.json"), str(route), "--out", str(tmp_path / "human.jsonl"))
    assert merged.returncode == 0, merged.stderr
    assert "labelled       10 of 10 human-routed items (0 still pending)" in merged.stdout
    assert "human vs judge agree on" in merged.stdout
    labels = {i.id: i.labels["human"] for i in dataset_files.read_dataset(tmp_path / "human.jsonl", "plain").instances}
    assert labels == submitted and len(submitted) == 10

    twice = api(label_studio, "GET", f"/api/tasks?project={project['id']}&page_size=1")
    twice = (twice["tasks"] if isinstance(twice, dict) else twice)[0]
    api(label_studio, "POST", f"/api/tasks/{twice['id']}/annotations", {"result": [{  # the same user again
        "from_name": "preference", "to_name": "prompt", "type": "choices", "value": {"choices": ["tie"]}}]})
    (tmp_path / "export2.json").write_text(json.dumps(
        api(label_studio, "GET", f"/api/projects/{project['id']}/export?exportType=JSON")))
    refused = hyper("tasks", "import", str(tmp_path / "export2.json"), str(route),
                    "--out", str(tmp_path / "again.jsonl"))
    assert refused.returncode == 2 and "field 'annotator'" in refused.stderr and "nothing was merged" in refused.stderr
    assert not (tmp_path / "again.jsonl").exists()
