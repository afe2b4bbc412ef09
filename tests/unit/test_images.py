"""Container images (Dockerfiles; no Docker engine here, so they are checked, not built): each
service's image runs the entry point the chart names, which is the one `hyper up` runs locally."""

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml

from hyper.infra.local_processes import SERVICES
from scripts.dependencies import SERVICE_EXTRAS

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
        assert SCRIPTS[chart[0]] == f"hyper_{service}.server:main"
    assert image_command(ROOT / "services" / "tagger" / "Dockerfile.gpu") == ["hyper-tagger"]


def test_the_trainer_and_gateway_images_run_the_job_and_gateway_entry_points():
    base_job = yaml.safe_load((ROOT / "helm" / "hyper" / "files" / "rm-trainer-job.yaml").read_text())
    job_command = base_job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert image_command(ROOT / "services" / "rm-trainer" / "Dockerfile") == job_command
    assert SCRIPTS[job_command[0]] == "hyper_rm_trainer.job:main"  # what the local runner starts
    assert VALUES["gateway"]["command"] == ["hyper-gateway"] and VALUES["gateway"]["image"] == "hyper-gateway"
    assert image_command(ROOT / "services" / "gateway" / "Dockerfile") == ["hyper-gateway"]
    assert SCRIPTS["hyper-gateway"] == "hyper_gateway.server:main"


def test_images_run_as_the_non_root_user_the_chart_declares():
    base = (ROOT / "docker" / "base.Dockerfile").read_text()
    uid = VALUES["podSecurityContext"]["runAsUser"]
    assert f"--uid {uid}" in base
    for dockerfile in ROOT.glob("services/*/Dockerfile*"):
        text = dockerfile.read_text()
        assert re.search(r"^FROM \$\{BASE\}$", text, re.MULTILINE), dockerfile
        assert re.search(rf"^USER {uid}$", text, re.MULTILINE), dockerfile


def test_each_service_image_installs_its_own_extra_only():
    for service, extra in SERVICE_EXTRAS.items():
        folder = "rm-trainer" if service == "hyper_rm_trainer" else service.removeprefix("hyper.")
        installs = re.findall(r"^COPY --from=wheel /requirements/([\w,${}-]+).txt ",
                              (ROOT / "services" / folder / "Dockerfile").read_text(), re.MULTILINE)
        # the trainer's with its accelerator's JAX backend
        assert installs == [f"{extra},jax-${{ACCELERATOR}}" if folder == "rm-trainer" else extra], folder


# The trainer image's ACCELERATOR build argument -> the extra of jax that drives that device.
JAX_EXTRA = {"cpu": "cpu", "cuda": "cuda12", "tpu": "tpu"}


def requirements(extras: str) -> list[str]:
    return subprocess.run([sys.executable, str(ROOT / "docker" / "requirements.py"), extras],
                          capture_output=True, text=True, check=True).stdout.split()


def test_the_trainer_image_has_a_requirement_set_per_accelerator_with_jaxs_own_extra():
    dockerfile = (ROOT / "services" / "rm-trainer" / "Dockerfile").read_text()
    assert re.search(r"^ARG ACCELERATOR=cpu$", dockerfile, re.MULTILINE)  # scripts/images.py builds the CPU one
    written = (ROOT / "docker" / "wheel.Dockerfile").read_text()
    trainer = requirements("trainer")
    jax_extras = metadata.metadata("jax").get_all("Provides-Extra")  # of the jax installed here
    for accelerator, jax_extra in JAX_EXTRA.items():
        assert f"trainer,jax-{accelerator}" in written, accelerator
        added = [r for r in requirements(f"trainer,jax-{accelerator}") if r not in trainer]
        assert len(added) == 1 and added[0].startswith(f"jax[{jax_extra}]"), added
        assert jax_extra in jax_extras, f"jax {metadata.version('jax')} has no extra {jax_extra}"
