"""On-disk state of the ppm service: a versioned model registry and the run records.

Writes are atomic (temporary file + rename); a run id is recorded at most once (exclusive
create), so a retried or duplicated training Job never doubles a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

from hyper.atomic import write_json_atomic
from hyper.errors import InvalidArgument, NotFound

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_MODEL = "default"


def check_name(field: str, value: str) -> str:
    if not NAME.match(value):
        raise InvalidArgument(field, f"{value!r} must match {NAME.pattern}")
    return value


class ModelRegistry:
    """models/<name>/v<N>-<hash>.json; the highest N is the latest version."""

    def __init__(self, root: Path):
        self.root = Path(root) / "models"
        self._lock = threading.Lock()

    def _versions(self, model: str) -> list[tuple[int, str]]:
        directory = self.root / model
        found = []
        for path in directory.glob("v*.json") if directory.is_dir() else []:
            number = path.stem.split("-", 1)[0][1:]
            if number.isdigit():
                found.append((int(number), path.stem))
        return sorted(found)

    def save(self, model: str, artifact: dict) -> tuple[str, dict]:
        check_name("model", model)
        with self._lock:
            versions = self._versions(model)
            number = versions[-1][0] + 1 if versions else 1
            digest = hashlib.sha256(json.dumps(artifact, sort_keys=True).encode()).hexdigest()[:8]
            version = f"v{number}-{digest}"
            stored = dict(artifact, model=model, version=version,
                          created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            write_json_atomic(self.root / model / f"{version}.json", stored)
        return version, stored

    def load(self, model: str, version: str = "") -> dict:
        check_name("model", model)
        versions = self._versions(model)
        if not versions:
            raise NotFound(f"no PPM named {model!r} has been fitted yet")
        if not version:
            version = versions[-1][1]
        path = self.root / model / f"{check_name('version', version)}.json"
        if not path.is_file():
            raise NotFound(f"PPM {model!r} has no version {version!r}")
        return json.loads(path.read_text())


class RunStore:
    """runs/<experiment>/<run_id>.json, created exactly once."""

    def __init__(self, root: Path):
        self.root = Path(root) / "runs"

    def record(self, run: dict) -> bool:
        experiment = check_name("run.experiment", run["experiment"])
        run_id = check_name("run.run_id", run["run_id"])
        path = self.root / experiment / f"{run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{run_id}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(run, sort_keys=True))
        try:
            os.link(tmp, path)  # fails if the run already exists: exactly-once
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def list(self, experiment: str = "") -> list[dict]:
        pattern = f"{check_name('experiment', experiment)}/*.json" if experiment else "*/*.json"
        return [json.loads(path.read_text()) for path in sorted(self.root.glob(pattern))]
