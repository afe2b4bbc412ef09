"""What each service's image installs: the library's dependencies plus the service's extra,
resolved through the installed distributions' metadata, with their installed size.

    python scripts/dependencies.py          # a table: distributions and MB per service image

The sizes are what pip installs into site-packages (RECORD of each distribution in this
virtualenv), not compressed image layers; the Python base image is not counted.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from importlib import metadata

from packaging.requirements import Requirement

PROJECT = "hyper-routing"
# service package -> the extra its image installs (docker/images.toml)
SERVICE_EXTRAS = {"hyper_tagger": "tagger", "hyper_ppm": "ppm", "hyper_router": "router",
                  "hyper_rm_trainer": "trainer", "hyper_gateway": "gateway"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(distribution: str, extras: frozenset[str] = frozenset()) -> list[Requirement]:
    """The distribution's requirements that apply with these extras on this platform."""
    applicable = []
    for text in metadata.requires(distribution) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in extras or {""}):
            applicable.append(requirement)
    return applicable


@cache
def closure(distribution: str, extras: frozenset[str] = frozenset()) -> frozenset[str]:
    """Every distribution installing `distribution[extras]` brings, itself included."""
    found = {canonical(distribution)}
    for requirement in requirements(distribution, extras):
        try:
            found |= closure(requirement.name, frozenset(requirement.extras))
        except metadata.PackageNotFoundError:
            continue  # not installed here (a platform-specific dependency)
    return frozenset(found)


def image_distributions(extra: str) -> frozenset[str]:
    return closure(PROJECT, frozenset({extra}))


def installed_megabytes(distribution: str) -> float:
    files = metadata.distribution(distribution).files or []
    return sum(f.size or 0 for f in files) / 1e6


def main() -> None:
    print(f"{'service':<18s} {'extra':<8s} {'distributions':>13s} {'installed MB':>13s}  heaviest")
    for service, extra in SERVICE_EXTRAS.items():
        dists = image_distributions(extra) - {PROJECT}
        sizes = sorted(((installed_megabytes(d), d) for d in dists), reverse=True)
        heaviest = ", ".join(f"{d} {mb:.0f}" for mb, d in sizes[:4])
        print(f"{service:<18s} {extra:<8s} {len(dists):13d} {sum(mb for mb, _ in sizes):13.0f}  {heaviest}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
