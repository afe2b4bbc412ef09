"""The ppm service's state: a versioned model registry and the run records, kept either as
files under one directory (the embedded default, one process) or in PostgreSQL (replicas
share it; HYPER_DATABASE_URL).

Both keep the same promises: a run's result is recorded at most once, so a retried or
duplicated training Job never doubles a run (files: exclusive create; PostgreSQL: the primary
key); a stored PPM is refused on load if its content no longer hashes to its recorded sha256.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Protocol

from psycopg import sql

from hyper.core.atomic_files import create_once, write_json_atomic, write_text_atomic
from hyper.core.errors import HyperError, InvalidArgument, NotFound
from hyper.core.schema import NAME_PATTERN
from hyper.infra.database import Database
from hyper.method.performance_models import artifact_digest

NAME = re.compile(NAME_PATTERN)
DEFAULT_MODEL = "default"
log = logging.getLogger(__name__)


def check_name(field: str, value: str) -> str:
    if not NAME.fullmatch(value):
        raise InvalidArgument(field, f"{value!r} must match {NAME.pattern}")
    return value


class CorruptState(HyperError):
    """A stored PPM that fails its integrity check: changed or damaged since it was written."""


class ModelVersions(Protocol):
    def save(self, model: str, artifact: dict) -> tuple[str, dict]: ...
    def load(self, model: str, version: str = "") -> dict: ...
    def promoted(self, model: str) -> str: ...
    def promote(self, model: str, version: str) -> dict: ...
    def list(self) -> list[dict]: ...


class RunRecords(Protocol):
    def record(self, run: dict) -> bool: ...
    def list(self, experiment: str = "") -> list[dict]: ...


_STORED_FIELDS = ("model", "version", "sha256", "created_at")


def _stamped(model: str, artifact: dict, number: int) -> tuple[str, dict]:
    """Version `number` of `model`: its name v<N>-<hash> and the document stored for it."""
    artifact = {k: v for k, v in artifact.items() if k not in _STORED_FIELDS}
    digest = artifact_digest(artifact)
    version = f"v{number}-{digest[:8]}"
    return version, dict(artifact, model=model, version=version, sha256=digest,
                         created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _verified(text: str, version: str, where: str) -> dict:
    """The stored model, if its content still hashes to what was recorded when it was saved
    (the full sha256 inside the document; for older files, the 8 characters in its version)."""
    try:
        stored = json.loads(text)
    except ValueError as error:
        raise CorruptState(f"{where}: not valid JSON ({error}); restore it or fit again") from error
    digest = artifact_digest({k: v for k, v in stored.items() if k not in _STORED_FIELDS})
    expected = stored.get("sha256") or version.split("-", 1)[-1]
    if not digest.startswith(expected):
        raise CorruptState(f"{where}: content does not match its recorded sha256 {expected[:12]}...: "
                           "it was changed after it was saved; restore it or fit again")
    return stored


def _intact(loaders: Iterable[Callable[[], dict]]) -> list[dict]:
    """The models that load; each that does not is named in the log and left out, so one
    damaged version does not hide the others from a listing (loading it still fails)."""
    listed = []
    for load in loaders:
        try:
            listed.append(load())
        except CorruptState as error:
            log.warning("left out of the model list: %s", error)
    return listed


def _run_key(run: dict) -> tuple[str, str]:
    return check_name("run.experiment", run["experiment"]), check_name("run.run_id", run["run_id"])


class _Promotion:
    """Promote, the same over either registry: it checks the version loads, then pins it."""

    def load(self, model: str, version: str = "") -> dict:
        raise NotImplementedError

    def _pin(self, model: str, version: str) -> None:
        """Makes "" resolve to `version`; "" unpins."""
        raise NotImplementedError

    def promote(self, model: str, version: str) -> dict:
        """Pins `version` ("" unpins); returns the version "" now resolves to."""
        check_name("model", model)
        if version:
            self.load(model, version)  # it must exist and be intact
        self._pin(model, version)
        return self.load(model)


class ModelRegistry(_Promotion):
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
        with self._lock:
            versions = self._versions(model)
            version, stored = _stamped(model, artifact, versions[-1][0] + 1 if versions else 1)
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
        return _verified(path.read_text(), version, str(path))

    def promoted(self, model: str) -> str:
        path = self.root / check_name("model", model) / "promoted"
        return path.read_text().strip() if path.is_file() else ""

    def _pin(self, model: str, version: str) -> None:
        if version:
            write_text_atomic(self.root / model / "promoted", version)
        else:
            (self.root / model / "promoted").unlink(missing_ok=True)

    def list(self) -> list[dict]:
        """Every intact version of every model, newest first within a model. A damaged one is
        reported in the log and left out (loading it still fails, naming it)."""
        models = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        return _intact(partial(self.load, model, version)
                       for model in models for _, version in reversed(self._versions(model)))


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
        experiment, run_id = _run_key(run)
        result = self.root / experiment / f"{run_id}.json"
        if run["state"] != "succeeded":
            if result.exists() and self._readable(result) is not None:
                return False
            write_json_atomic(self.root / experiment / "failed" / f"{run_id}.json", run)
            return True
        if result.exists():
            self._readable(result)  # a crash's unreadable leftover is quarantined: the real result lands
        return create_once(result, json.dumps(run, sort_keys=True))

    def list(self, experiment: str = "") -> list[dict]:
        """Every run's result, or its latest failure when it has no result, by experiment and id.
        An unreadable record (a crash's leftover) is quarantined and reported, never listed."""
        directory = check_name("experiment", experiment) if experiment else "*"
        entries = {(path.parent.parent.name, path.stem): path
                   for path in self.root.glob(f"{directory}/failed/*.json")}
        entries.update({(path.parent.name, path.stem): path
                        for path in self.root.glob(f"{directory}/*.json")})
        records = (self._readable(entries[key]) for key in sorted(entries))
        return [record for record in records if record is not None]

    @staticmethod
    def _readable(path: Path) -> dict | None:
        """The record at `path`, or None after moving it to quarantine/ beside it."""
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:  # another reader quarantined it first
            return None
        except (ValueError, UnicodeDecodeError) as error:
            quarantine = path.parent / "quarantine"
            quarantine.mkdir(exist_ok=True)
            moved = quarantine / f"{path.name}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, moved)
                log.warning("run record %s is unreadable (%s): moved to %s", path, error, moved)
            return None


_LOAD_VERSION = """
    SELECT version, artifact FROM ppm_model_versions
    WHERE model = %(model)s AND version = coalesce(
        nullif(%(version)s, ''),
        (SELECT version FROM ppm_promoted WHERE model = %(model)s),
        (SELECT version FROM ppm_model_versions WHERE model = %(model)s ORDER BY number DESC LIMIT 1))"""


# Names sort by code point ("C"), as Python sorts them in the file store.
_LIST_VERSIONS = 'SELECT model, version, artifact FROM ppm_model_versions ORDER BY model COLLATE "C", number DESC'


class PostgresModelRegistry(_Promotion):
    """The registry as rows of ppm_model_versions (unique per model and number, and per model and
    version) and ppm_promoted; the same versions, names and resolution as the files."""

    def __init__(self, database: Database):
        self.database = database

    def save(self, model: str, artifact: dict) -> tuple[str, dict]:
        check_name("model", model)
        with self.database.connection() as connection:
            # Replicas fitting the same model take numbers in turn; the key refuses a repeat anyway.
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('ppm_model_versions'), hashtext(%s))", [model])
            latest = connection.execute("SELECT max(number) FROM ppm_model_versions WHERE model = %s",
                                        [model]).fetchone()
            number = (latest[0] or 0) + 1 if latest else 1
            version, stored = _stamped(model, artifact, number)
            connection.execute("INSERT INTO ppm_model_versions (model, number, version, artifact) "
                               "VALUES (%s, %s, %s, %s)", [model, number, version, json.dumps(stored, sort_keys=True)])
        return version, stored

    def load(self, model: str, version: str = "") -> dict:
        check_name("model", model)
        if version:
            check_name("version", version)
        with self.database.connection() as connection:
            row = connection.execute(_LOAD_VERSION, {"model": model, "version": version}).fetchone()
            known = row or connection.execute("SELECT 1 FROM ppm_model_versions WHERE model = %s LIMIT 1",
                                              [model]).fetchone()
        if not known:
            raise NotFound(f"no PPM named {model!r} has been fitted yet")
        if not row:
            raise NotFound(f"PPM {model!r} has no version {version!r}")
        return _verified(row[1], row[0], f"PPM {model}/{row[0]} in the state database")

    def promoted(self, model: str) -> str:
        with self.database.connection() as connection:
            row = connection.execute("SELECT version FROM ppm_promoted WHERE model = %s",
                                     [check_name("model", model)]).fetchone()
        return row[0] if row else ""

    def _pin(self, model: str, version: str) -> None:
        with self.database.connection() as connection:
            if version:
                connection.execute("INSERT INTO ppm_promoted (model, version) VALUES (%s, %s) "
                                   "ON CONFLICT (model) DO UPDATE SET version = excluded.version", [model, version])
            else:
                connection.execute("DELETE FROM ppm_promoted WHERE model = %s", [model])

    def list(self) -> list[dict]:
        """Every intact version of every model, newest first within a model; a damaged one is
        logged and left out, as in the file store."""
        with self.database.connection() as connection:
            rows = connection.execute(_LIST_VERSIONS).fetchall()
        return _intact(partial(_verified, artifact, version, f"PPM {model}/{version} in the state database")
                       for model, version, artifact in rows)


# One statement, so exactly-once holds across replicas without a read first: the row's key
# conflicts with any earlier record of the run, and the update applies only while it has no result.
_RECORD_RUN = sql.SQL(
    "INSERT INTO ppm_runs (experiment, run_id, {column}) VALUES (%s, %s, %s) "
    "ON CONFLICT (experiment, run_id) DO UPDATE SET {column} = excluded.{column}, recorded_at = now() "
    "WHERE ppm_runs.result IS NULL RETURNING true")
_LIST_RUNS = ("SELECT coalesce(result, failure) FROM ppm_runs WHERE %(experiment)s = '' OR experiment = %(experiment)s "
              'ORDER BY experiment COLLATE "C", run_id COLLATE "C"')


class PostgresRunStore:
    """Runs as rows of ppm_runs, keyed by (experiment, run_id): the result column is written
    once; the failure column holds the latest failure until then. Same answers as RunStore."""

    def __init__(self, database: Database):
        self.database = database

    def record(self, run: dict) -> bool:
        """True if this call recorded something new: a first result, or a failure of a run
        that has no result yet (a failure after the result is ignored)."""
        experiment, run_id = _run_key(run)
        column = sql.Identifier("result" if run["state"] == "succeeded" else "failure")
        with self.database.connection() as connection:
            created = connection.execute(_RECORD_RUN.format(column=column),
                                         [experiment, run_id, json.dumps(run, sort_keys=True)]).fetchone()
        return created is not None

    def list(self, experiment: str = "") -> list[dict]:
        """Every run's result, or its latest failure when it has no result, by experiment and id."""
        if experiment:
            check_name("experiment", experiment)
        with self.database.connection() as connection:
            rows = connection.execute(_LIST_RUNS, {"experiment": experiment}).fetchall()
        return [json.loads(text) for (text,) in rows]
