"""Where each module of the `hyper` package lives in this checkout.

The package is one import namespace spread over folders that show the architecture:
`src/hyper` is the shared library and `services/<name>` are the services, mapped by
pyproject's [tool.setuptools.package-dir]. Static tools that only understand one folder per
package (mypy, the import-graph check) use this map.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY = "hyper"


def package_dirs(repo: Path = REPO) -> dict[str, Path]:
    """Package name -> folder, for every package pyproject maps (the library first)."""
    mapping = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name: repo / folder for name, folder in mapping.items()}


def services(repo: Path = REPO) -> list[str]:
    """The service packages: every mapped package but the library."""
    return [name for name in package_dirs(repo) if name != LIBRARY]


def modules(repo: Path = REPO) -> dict[str, Path]:
    """Module name -> file, for every .py file of every mapped package and its subfolders."""
    found = {}
    for package, folder in package_dirs(repo).items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def service_of(module: str, service_names: list[str]) -> str | None:
    """The service a module belongs to, or None for the library."""
    return next((s for s in service_names if module == s or module.startswith(s + ".")), None)


def link_tree(target: Path, repo: Path = REPO) -> Path:
    """A folder where `hyper` is one ordinary package tree of symbolic links to the sources
    (and to the type stubs protoc generates beside its modules), made anew each time."""
    shutil.rmtree(target, ignore_errors=True)
    for name, path in modules(repo).items():
        parts = name.split(".")
        folder = target.joinpath(*parts) if path.name == "__init__.py" else target.joinpath(*parts[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        for source in (path, path.with_suffix(".pyi")):
            if source.exists():
                (folder / source.name).symlink_to(source)
    return target / LIBRARY


if __name__ == "__main__":
    import sys

    print(link_tree(Path(sys.argv[1]).resolve()))
