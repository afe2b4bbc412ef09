"""The devices a trainer Job trains on, checked before it trains.

A Job scheduled on a GPU or TPU node pool says so in HYPER_ACCELERATOR (the chart and `hyper
jobs` set it). JAX without that device (a CPU-only jaxlib in the image, a driver or libtpu that
did not load, a pod the device plugin gave no device) falls back to the CPU with a warning and
would train there, many times slower: the trainer stops instead, with EXIT_NO_ACCELERATOR.
"""

from __future__ import annotations

from typing import Literal

import jax
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from hyper.core.errors import HyperError

EXIT_NO_ACCELERATOR = 3
# The image whose jaxlib drives each accelerator (docker/images.toml).
IMAGE_FOR = {"gpu": "hyper-rm-trainer-cuda", "tpu": "hyper-rm-trainer-tpu"}


class AcceleratorMissing(HyperError):
    pass


class DeviceSettings(BaseSettings):
    """What the trainer's pod was scheduled for (the chart and `hyper jobs` set it)."""

    model_config = SettingsConfigDict(env_prefix="HYPER_")

    accelerator: Literal["cpu", "gpu", "tpu"] = Field("cpu", description="the device the training Job expects; "
                                                                         "it refuses to train on another")


def expected_accelerator() -> str:
    try:
        return DeviceSettings().accelerator
    except ValidationError as error:
        raise AcceleratorMissing(f"HYPER_ACCELERATOR: {error.errors()[0]['msg']}") from error


def join_hosts(distributed: bool) -> None:
    """Joins the other hosts of a slice; before JAX first touches a device, as it must be.
    JAX finds them from the environment (on GKE, TPU_WORKER_HOSTNAMES and TPU_WORKER_ID)."""
    if not distributed or jax.distributed.is_initialized():
        return
    try:
        jax.distributed.initialize()
    except ValueError as error:  # no cluster JAX knows of in the environment
        raise AcceleratorMissing(
            f"full.distributed: JAX found no slice of hosts to join ({error}); a distributed spec runs as "
            "a JobSet on a multi-host TPU slice (hyper jobs submit --backend kubernetes --accelerator tpu "
            "--tpu-hosts N), not on one machine") from error


def require_accelerator(expected: str) -> None:
    """Raises AcceleratorMissing unless JAX's default backend is the expected accelerator's."""
    backend = jax.default_backend()
    if expected == "cpu" or backend == expected:
        return
    devices = ", ".join(sorted({str(d.device_kind) for d in jax.devices()}))
    raise AcceleratorMissing(
        f"HYPER_ACCELERATOR={expected}: this Job was scheduled for a {expected}, but JAX "
        f"{jax.__version__} sees only {backend} devices ({devices}); not training on the CPU. "
        f"Run the {IMAGE_FOR[expected]} image (its jaxlib drives the device) and check that the "
        f"pod was given one.")


def start(distributed: bool) -> None:
    """The trainer's first JAX step: join the slice's hosts, then check the devices."""
    expected = expected_accelerator()
    join_hosts(distributed)
    require_accelerator(expected)
