"""Container images (docker/service.Dockerfile, built from docker/images.toml; built and run with
podman in tests/service/test_container_images.py): each service's image runs the entry point the
chart names, which is the one `hyper up` runs locally, installs its own extra only, and is named
by one registry and the package's version everywhere."""

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml

from hyper.infra.images import REGISTRY, VERSION, image
from hyper.infra.local_processes import SERVICES
from hyper.infra.training_jobs import JobSettings
from hyper_rm_trainer.devices import IMAGE_FOR
from scripts.dependencies import SERVICE_EXTRAS

ROOT = Path(__file__).resolve().parents[2]
VALUES = yaml.safe_load((ROOT / "helm" / "hyper" / "values.yaml").read_text())
CHART = yaml.safe_load((ROOT / "helm" / "hyper" / "Chart.yaml").read_text())
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
IMAGES = tomllib.loads((ROOT / "docker" / "images.toml").read_text())
DOCKERFILE = (ROOT / "docker" / "service.Dockerfile").read_text()


def test_each_service_image_runs_the_entry_point_of_the_chart_and_of_local_mode():
    for service in SERVICES:
        chart = VALUES["services"][service]["command"]
        assert chart == [f"hyper-{service}"] == [IMAGES[service]["command"]]
        # `hyper up` runs `python -m hyper_<service>.server`, whose main is the console script's
        assert SCRIPTS[chart[0]] == f"hyper_{service}.server:main"
    assert IMAGES["tagger-gpu"]["command"] == "hyper-tagger"
    assert VALUES["services"]["tagger"]["image"] == "hyper-tagger"


def test_the_trainer_and_gateway_images_run_the_job_and_gateway_entry_points():
    base_job = yaml.safe_load((ROOT / "helm" / "hyper" / "files" / "rm-trainer-job.yaml").read_text())
    job_command = base_job["spec"]["template"]["spec"]["containers"][0]["command"]
    for name in ("rm-trainer", *(image_name.removeprefix("hyper-") for image_name in IMAGE_FOR.values())):
        assert [IMAGES[name]["command"]] == job_command
    assert SCRIPTS[job_command[0]] == "hyper_rm_trainer.job:main"  # what the local runner starts
    assert VALUES["gateway"]["command"] == ["hyper-gateway"] == [IMAGES["gateway"]["command"]]
    assert VALUES["gateway"]["image"] == "hyper-gateway" and SCRIPTS["hyper-gateway"] == "hyper_gateway.server:main"


def test_the_dockerfile_runs_its_command_as_the_non_root_user_the_chart_declares():
    uid = VALUES["podSecurityContext"]["runAsUser"]
    assert f"--uid {uid}" in (ROOT / "docker" / "base.Dockerfile").read_text()
    assert re.search(r"^FROM \$\{BASE\}$", DOCKERFILE, re.MULTILINE)
    assert re.search(rf"^USER {uid}$", DOCKERFILE, re.MULTILINE)
    assert re.search(r'^ENV HYPER_COMMAND=\$\{COMMAND\}$', DOCKERFILE, re.MULTILINE)
    assert re.search(r'^CMD exec "\$HYPER_COMMAND"$', DOCKERFILE, re.MULTILINE)


def test_each_service_image_installs_its_own_extra_only():
    assert re.findall(r"^COPY --from=wheel /requirements/(\S+)\.txt ", DOCKERFILE, re.MULTILINE) == ["${EXTRA}"]
    for service, extra in SERVICE_EXTRAS.items():
        name = service.removeprefix("hyper_").replace("_", "-")
        # the trainer's with its accelerator's JAX backend
        assert IMAGES[name]["extra"] == (f"{extra},jax-cpu" if name == "rm-trainer" else extra), name


def test_one_registry_and_the_package_version_name_every_image():
    assert VALUES["image"]["registry"] == REGISTRY and VALUES["image"]["tag"] == ""  # "" = the appVersion
    assert CHART["appVersion"] == VERSION == metadata.version("hyper-routing")
    jobs = JobSettings()
    assert (jobs.cpu_image, jobs.gpu_image, jobs.tpu_image) == (
        image("rm-trainer"), f"{REGISTRY}/{IMAGE_FOR['gpu']}:{VERSION}", f"{REGISTRY}/{IMAGE_FOR['tpu']}:{VERSION}")
    named = [VALUES["services"][s]["image"] for s in SERVICES] + [VALUES["gateway"]["image"]]
    assert {name.removeprefix("hyper-") for name in named} <= set(IMAGES)


# The trainer image's accelerator -> the extra of jax that drives that device.
JAX_EXTRA = {"cpu": "cpu", "cuda": "cuda12", "tpu": "tpu"}


def requirements(extras: str) -> list[str]:
    return subprocess.run([sys.executable, str(ROOT / "docker" / "requirements.py"), extras],
                          capture_output=True, text=True, check=True).stdout.split()


def test_the_trainer_image_has_a_requirement_set_per_accelerator_with_jaxs_own_extra():
    trainer = requirements("trainer")
    jax_extras = metadata.metadata("jax").get_all("Provides-Extra")  # of the jax installed here
    for accelerator, jax_extra in JAX_EXTRA.items():
        name = "rm-trainer" if accelerator == "cpu" else f"rm-trainer-{accelerator}"
        assert IMAGES[name]["extra"] == f"trainer,jax-{accelerator}"
        added = [r for r in requirements(f"trainer,jax-{accelerator}") if r not in trainer]
        assert len(added) == 1 and added[0].startswith(f"jax[{jax_extra}]"), added
        assert jax_extra in jax_extras, f"jax {metadata.version('jax')} has no extra {jax_extra}"


def test_every_file_a_package_reads_at_run_time_is_in_its_wheel():
    """The images install the wheel, not the tree: a data file the package-data patterns miss is
    absent there (the tagger's prototypes once were, and its pods crash-looped on the node)."""
    from fnmatch import fnmatch

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    roots = [ROOT / "src", *(ROOT / "services").iterdir()]
    data_files = [(root, path) for root in roots for path in root.rglob("*")
                  if path.is_file() and path.suffix in {".json", ".sql", ".yaml", ".txt"}
                  and "egg-info" not in str(path)]
    assert data_files
    for root, path in data_files:
        package = ".".join(path.parent.relative_to(root).parts)
        assert any(fnmatch(path.name, pattern) for pattern in patterns.get(package, [])), \
            f"{path.relative_to(ROOT)} is not in package-data for {package}"
