"""The project's container images by name: <registry>/hyper-<name>:<version>, with the version
of this package (the chart's appVersion and image.registry say the same; a test checks).
docker/images.toml lists every image and how docker/service.Dockerfile builds it."""

from __future__ import annotations

from importlib import metadata

REGISTRY = "ghcr.io/example"
VERSION = metadata.version("hyper-routing")


def image(name: str) -> str:
    """The reference of image `hyper-<name>` (tagger, rm-trainer-cuda, ...) in the registry."""
    return f"{REGISTRY}/hyper-{name}:{VERSION}"
