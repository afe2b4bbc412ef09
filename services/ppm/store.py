"""On-disk state of the ppm service: a versioned model registry and the run records.

Writes are atomic (temporary file + rename); a run's result is recorded at most once
(exclusive create), so a retried or duplicated training Job never doubles a run.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

from hyper.atomic import create_once, write_json_atomic, write_text_atomic
from hyper.errors import HyperError, InvalidArgument, NotFound
from hyper.performance_models import artifact_digest
from hyper.schema import NAME_PATTERN

NAME = re.compile(NAME_PATTERN)
DEFAULT_MODEL = "default"


def check_name(field: str, value: str) -> str:
    if not NAME.match(value):
        raise InvalidArgument(field, f"{value!r} must match {NAME.pattern}")
    return value


class CorruptState(HyperError):
    """A stored file that fails its integrity check: changed or damaged since it was written."""


_STORED_FIELDS = ("model", "version", "sha256", "created_at")


def _verified(path: Path, version: str) -> dict:
    """The stored model, if its content still hashes to what was recorded when it was saved
    (the full sha256 inside the file; for older files, the 8 characters in its version)."""
    try:
        stored = json.loads(path.read_text())
    except ValueError as error:
        raise CorruptState(f"{path}: not valid JSON ({error}); restore it or fit again") from error
    digest = artifact_digest({k: v for k, v in stored.items() if k not in _STORED_FIELDS})
    expected = stored.get("sha256") or version.split("-", 1)[-1]
    if not digest.startswith(expected):
        raise CorruptState(f"{path}: content does not match its recorded sha256 {expected[:12]}...: "
                           "the file was changed after it was saved; restore it or fit again")
    return stored


class ModelRegistry:
    """models/<name>/v<N>-<hash>.json; the highest N is the latest version. A promoted version
    (models/<name>/promoted) is what "" resolves to; without one, the latest."""

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
        artifact = {k: v for k, v in artifact.items() if k not in _STORED_FIELDS}
        with self._lock:
            versions = self._versions(model)
            number = versions[-1][0] + 1 if versions else 1
            digest = artifact_digest(artifact)
            version = f"v{number}-{digest[:8]}"
            stored = dict(artifact, model=model, version=version, sha256=digest,
                          created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            write_json_atomic(self.root / model / f"{version}.json", stored)
        return version, stored

    def load(self, model: str, version: str = "") -> dict:
        check_name("model", model)
        versions = self._versions(model)
        if not versions:
            raise NotFound(f"no PPM named {model!r} has been fitted yet")
        version = version or self.promoted(model) or versions[-1][1]
        path = self.root / model / f"{check_name('version', version)}.json"
        if not path.is_file():
            raise NotFound(f"PPM {model!r} has no version {version!r}")
        return _verified(path, version)

    def promoted(self, model: str) -> str:
        path = self.root / check_name("model", model) / "promoted"
        return path.read_text().strip() if path.is_file() else ""

    def promote(self, model: str, version: str) -> dict:
        """Pins `version` ("" unpins); returns the version "" now resolves to."""
        if version:
            self.load(model, version)  # it must exist
            write_text_atomic(self.root / model / "promoted", version)
        else:
            (self.root / check_name("model", model) / "promoted").unlink(missing_ok=True)
        return self.load(model)

    def list(self) -> list[dict]:
        """Every version of every model, newest first within a model."""
        models = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        return [self.load(model, version) for model in models for _, version in reversed(self._versions(model))]


class RunStore:
    """runs/<experiment>/<run_id>.json: a run's result, created exactly once.

    A failed attempt is kept apart (runs/<experiment>/failed/<run_id>.json, the latest reason)
    and does not end the run: a retried Job trains it again, and its result then replaces the
    failure in listings. A run therefore has one entry, its result or its latest failure.
    """

    def __init__(self, root: Path):
        self.root = Path(root) / "runs"

    def record(self, run: dict) -> bool:
        """True if this call recorded something new: a first result, or a failure of a run
        that has no result yet (a failure after the result is ignored)."""
        experiment = check_name("run.experiment", run["experiment"])
        run_id = check_name("run.run_id", run["run_id"])
        result = self.root / experiment / f"{run_id}.json"
        if run["state"] != "succeeded":
            if result.exists():
                return False
            write_json_atomic(self.root / experiment / "failed" / f"{run_id}.json", run)
            return True
        return create_once(result, json.dumps(run, sort_keys=True))

    def list(self, experiment: str = "") -> list[dict]:
        """Every run's result, or its latest failure when it has no result, by experiment and id."""
        directory = check_name("experiment", experiment) if experiment else "*"
        entries = {(path.parent.parent.name, path.stem): path
                   for path in self.root.glob(f"{directory}/failed/*.json")}
        entries.update({(path.parent.name, path.stem): path
                        for path in self.root.glob(f"{directory}/*.json")})
        return [json.loads(entries[key].read_text()) for key in sorted(entries)]
