"""Prints the requirements an image installs for one extra of the project, read from
pyproject.toml (the project's own extras, e.g. hyper-routing[parquet], expanded): an image's
dependency layer then depends on this list alone and survives changes to the code.

    python docker/requirements.py router > requirements.txt      # or several: tagger,gpu
    python docker/requirements.py --all DIR     # DIR/<extra>.txt for every image of images.toml
"""

import re
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["project"]
IMAGES = tomllib.loads((HERE / "images.toml").read_text())
SELF = re.compile(rf"^{re.escape(PROJECT['name'])}\[([\w,]+)\]$")


def requirements(extra: str) -> list[str]:
    found = []
    for requirement in PROJECT["optional-dependencies"][extra]:
        own = SELF.match(requirement)
        found += [r for e in own.group(1).split(",") for r in requirements(e)] if own else [requirement]
    return found


def image_requirements(extras: str) -> str:
    listed = [r for extra in extras.split(",") for r in requirements(extra)]
    return "\n".join(dict.fromkeys(PROJECT["dependencies"] + listed)) + "\n"


if __name__ == "__main__":
    if sys.argv[1] == "--all":
        directory = Path(sys.argv[2])
        directory.mkdir(parents=True, exist_ok=True)
        for image in IMAGES.values():
            (directory / f"{image['extra']}.txt").write_text(image_requirements(image["extra"]))
    else:
        print(image_requirements(sys.argv[1]), end="")
