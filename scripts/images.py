"""Builds the service images with rootful podman on a machine with no registry access.

    python scripts/images.py            # build (cached) and list the images
    python scripts/images.py --print    # the build command of every image (docker or podman)

No base image can be pulled here, so the Python layer comes from Debian's packages
(debootstrap, Python 3.11) imported into podman, and pip inside a build installs from a
wheelhouse made on the host (`pip wheel`, mounted at /deps while building, never copied into
a layer). The Dockerfiles are the published ones, given that base and the wheelhouse through
build arguments. Layers are cached by podman; the OS image and the wheelhouse under
~/.cache/hyper, keyed by what they are made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "hyper" / "images"
OS_IMAGE = "localhost/hyper-os:bookworm"
BASE_IMAGE = "localhost/hyper-base:local"
WHEEL_IMAGE = "localhost/hyper-wheel:local"
IMAGES = tomllib.loads((ROOT / "docker" / "images.toml").read_text())
BUILT_HERE = ("tagger", "ppm", "router", "rm-trainer", "gateway")  # the CPU images (no CUDA, no TPU here)
# What debootstrap fetches: the mirror apt uses on this machine.
MIRROR = "http://deb.debian.org/debian"
# crun, podman's default runtime, fails here (setrlimit, hybrid cgroups): runc + cgroupfs work.
CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n"


# Requirements that apply to Debian's Python 3.11.2 in the images but not to the host's
# (environment markers), so a wheelhouse resolved on the host would miss them.
FOR_CONTAINER_PYTHON = ("async-timeout>=4.0.3",)  # redis, for python_full_version < 3.11.3


def image_name(service: str) -> str:
    return f"localhost/hyper-{service}:local"


def podman(*args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    conf = CACHE / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    return subprocess.run(["podman", "--runtime", "runc", *args], env=env, check=check, text=True,
                          capture_output=capture)


def available() -> str:
    """Empty if podman can build and run here, else why not."""
    if not shutil.which("podman") or not shutil.which("debootstrap"):
        return "podman or debootstrap is not installed (`make system-deps` installs them)"
    if os.geteuid() != 0:
        return "rootful podman is needed (no user namespaces for rootless here)"
    return ""


def exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def os_image() -> None:
    """Debian bookworm (minbase) with Python 3.11 and a virtualenv on PATH, as a podman image."""
    if exists(OS_IMAGE):
        return
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm",
                        str(rootfs), MIRROR], check=True, capture_output=True)
        subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", "/opt/venv"], check=True)
        shutil.rmtree(rootfs / "var" / "cache" / "apt", ignore_errors=True)
        shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        tarball = Path(scratch) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        path = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        podman("import", "--change", f"ENV PATH={path}", "--change", "ENV LANG=C.UTF-8", str(tarball), OS_IMAGE)


def wheelhouse() -> Path:
    """Wheels of every dependency of every image (and of the wheel image's build stage), made
    once per set of requirements."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needs = [project["dependencies"], project["optional-dependencies"], FOR_CONTAINER_PYTHON]
    key = hashlib.sha256(json.dumps(needs, sort_keys=True).encode()).hexdigest()[:12]
    directory = CACHE / f"wheels-{key}"
    if (directory / ".complete").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    extras = "tagger,ppm,router,trainer,gateway,parquet"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(directory),
                    f"{ROOT}[{extras}]", "grpcio-tools==1.85.1", "pip", "setuptools", "wheel", *FOR_CONTAINER_PYTHON],
                   check=True)
    for project_wheel in directory.glob("hyper_routing-*.whl"):
        project_wheel.unlink()  # the base image builds its own from the sources
    (directory / ".complete").touch()
    return directory


class BuildFailed(RuntimeError):
    pass


def service_arguments(name: str) -> dict[str, str]:
    """The build arguments of one image of docker/images.toml."""
    image = IMAGES[name]
    arguments = {"EXTRA": image["extra"], "COMMAND": image["command"]}
    if "torch_index" in image:
        arguments["TORCH_INDEX"] = image["torch_index"]
    return arguments


def flags(arguments: dict[str, str]) -> list[str]:
    return [a for name, value in arguments.items() for a in ("--build-arg", f"{name}={value}")]


def build(dockerfile: str, tag: str, wheels: Path, arguments: dict[str, str] | None = None) -> None:
    offline = {"PYTHON_IMAGE": OS_IMAGE, "BASE": BASE_IMAGE, "WHEEL": WHEEL_IMAGE, "PIP_NO_INDEX": "1"}
    done = podman("build", "--quiet", "--network", "none", "-f", dockerfile, "-t", tag,
                  "--volume", f"{wheels}:/deps:ro", *flags(offline | (arguments or {})), str(ROOT),
                  capture=True, check=False)
    if done.returncode:
        raise BuildFailed(f"{dockerfile} -> {tag} failed:\n{done.stderr[-3000:]}")


def print_commands(registry: str, version: str) -> None:
    """What a release builds, in order: the base, the wheel, then every image of images.toml."""
    base, wheel = f"{registry}/hyper-base:{version}", f"{registry}/hyper-wheel:{version}"
    print(f"docker build -f docker/base.Dockerfile -t {base} .")
    print(f"docker build -f docker/wheel.Dockerfile -t {wheel} .")
    for name in IMAGES:
        arguments = {"BASE": base, "WHEEL": wheel} | service_arguments(name)
        shown = " ".join(f"--build-arg {key}={shlex.quote(value)}" for key, value in arguments.items())
        print(f"docker build -f docker/service.Dockerfile {shown} -t {registry}/hyper-{name}:{version} .")


def build_all(progress=print) -> dict[str, dict]:
    """Every service image (cached layers); per image its size and user."""
    progress("images: Debian base")
    os_image()
    progress("images: wheelhouse")
    wheels = wheelhouse()
    progress("images: hyper-base, hyper-wheel")
    build("docker/base.Dockerfile", BASE_IMAGE, wheels)
    build("docker/wheel.Dockerfile", WHEEL_IMAGE, wheels)
    images = {}
    for service in BUILT_HERE:
        progress(f"images: hyper-{service}")
        build("docker/service.Dockerfile", image_name(service), wheels, service_arguments(service))
        [info] = json.loads(podman("image", "inspect", image_name(service), capture=True).stdout)
        images[service] = {"built": True, "size_mb": round(info["Size"] / 2**20),
                           "user": info["Config"].get("User", "")}
    return images


if __name__ == "__main__":
    if sys.argv[1:] == ["--print"]:
        from hyper.infra.images import REGISTRY, VERSION

        print_commands(REGISTRY, VERSION)
        sys.exit(0)
    reason = available()
    if reason:
        sys.exit(f"cannot build images here: {reason}")
    print(json.dumps(build_all(), indent=1))
