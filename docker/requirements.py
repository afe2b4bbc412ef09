"""Prints the requirements an image installs for one extra of the project, read from
pyproject.toml (the project's own extras, e.g. hyper-routing[parquet], expanded): an image's
dependency layer then depends on this list alone and survives changes to the code.

    python docker/requirements.py router > requirements.txt      # or several: tagger,gpu
"""

import re
import sys
import tomllib
from pathlib import Path

PROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
SELF = re.compile(rf"^{re.escape(PROJECT['name'])}\[([\w,]+)\]$")


def requirements(extra: str) -> list[str]:
    found = []
    for requirement in PROJECT["optional-dependencies"][extra]:
        own = SELF.match(requirement)
        found += [r for e in own.group(1).split(",") for r in requirements(e)] if own else [requirement]
    return found


if __name__ == "__main__":
    extras = [r for extra in sys.argv[1].split(",") for r in requirements(extra)]
    print("\n".join(dict.fromkeys(PROJECT["dependencies"] + extras)))
