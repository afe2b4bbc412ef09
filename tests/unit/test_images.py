"""Container images (Dockerfiles; no Docker engine here, so they are checked, not built): each
service's image runs the entry point the chart names, which is the one `hyper up` runs locally."""

import json
import re
import tomllib
from pathlib import Path

import yaml

from hyper.local import SERVICES

ROOT = Path(__file__).resolve().parents[2]
VALUES = yaml.safe_load((ROOT / "helm" / "hyper" / "values.yaml").read_text())
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def image_command(dockerfile: Path) -> list[str]:
    [cmd] = re.findall(r"^CMD (\[.*\])$", dockerfile.read_text(), re.MULTILINE)
    return json.loads(cmd)


def test_each_service_image_runs_the_entry_point_of_the_chart_and_of_local_mode():
    for service in SERVICES:
        chart = VALUES["services"][service]["command"]
        assert chart == [f"hyper-{service}"]
        assert image_command(ROOT / "services" / service / "Dockerfile") == chart
        # `hyper up` runs `python -m hyper.<service>.server`, whose main is the console script's
        assert SCRIPTS[chart[0]] == f"hyper.{service}.server:main"
    assert image_command(ROOT / "services" / "tagger" / "Dockerfile.gpu") == ["hyper-tagger"]


def test_the_trainer_and_gateway_images_run_the_job_and_gateway_entry_points():
    base_job = yaml.safe_load((ROOT / "helm" / "hyper" / "files" / "rm-trainer-job.yaml").read_text())
    job_command = base_job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert image_command(ROOT / "services" / "rm-trainer" / "Dockerfile") == job_command
    assert SCRIPTS[job_command[0]] == "hyper.rm_trainer.job:main"  # what the local runner starts
    assert VALUES["gateway"]["command"] == ["hyper-gateway"] and VALUES["gateway"]["image"] == "hyper-router"
    assert SCRIPTS["hyper-gateway"] == "hyper.gateway:main"


def test_images_run_as_the_non_root_user_the_chart_declares():
    base = (ROOT / "docker" / "base.Dockerfile").read_text()
    uid = VALUES["podSecurityContext"]["runAsUser"]
    assert f"--uid {uid}" in base and re.search(rf"^USER {uid}$", base, re.MULTILINE)
    for dockerfile in ROOT.glob("services/*/Dockerfile*"):
        assert re.search(r"^FROM \$\{BASE\}$", dockerfile.read_text(), re.MULTILINE), dockerfile
