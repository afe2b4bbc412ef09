"""A module as it was at an earlier commit, importable beside today's: the "before" side of a
benchmark that compares an implementation with the one it replaced, in the same run."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def module_at_commit(commit: str, path: str, name: str, directory: Path,
                     renamed_imports: dict[str, str] | None = None) -> ModuleType:
    """`path` (relative to the repository) at `commit`, imported as `name` from a copy written
    under `directory`; `renamed_imports` maps modules it imported to where they live now."""
    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    for old, new in (renamed_imports or {}).items():
        source = source.replace(f"from {old} import", f"from {new} import")
    copy = directory / f"{name}.py"
    copy.write_text(source)
    spec = importlib.util.spec_from_file_location(name, copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def services_at_commit(commit: str, directory: Path) -> str:
    """The library and every service as they were at `commit`, unpacked under `directory` with
    protobuf modules generated from that commit's proto/ (they are not in git); the PYTHONPATH
    that runs them ahead of today's installed code."""
    archive = subprocess.run(["git", "archive", commit, "src", "services", "proto"], cwd=REPO, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    protos = sorted(str(path) for path in (directory / "proto").rglob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(directory / "proto"),
                    f"--python_out={directory / 'src'}", f"--grpc_python_out={directory / 'src'}", *protos],
                   check=True, capture_output=True)
    services = sorted(str(path) for path in (directory / "services").iterdir() if path.is_dir())
    return os.pathsep.join([str(directory / "src"), *services])
