"""ppm's state in a real PostgreSQL server (Debian's package, started here): the same store
contract as the files, run against both; the versioned migrations; and two ppm replicas, as
processes, sharing one database while parallel recorders submit every run several times over
both: each run recorded exactly once, none lost."""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from harness.local import free_ports, local_settings
from harness.postgres import PostgresServer, running_postgres
from harness.replicas import serving_replicas
from hyper.api import proto_convert, serving
from hyper.api.clients import PPMClient
from hyper.core.errors import InvalidArgument, NotFound, PeerUnavailable
from hyper.infra.database import (
    BadMigrations,
    Database,
    SchemaTooNew,
    applied_version,
    bundled_migrations,
    migrate,
    open_database,
    parse_migrations,
)
from hyper.v1 import ppm_pb2
from hyper_ppm.store import (
    CorruptState,
    ModelRegistry,
    ModelVersions,
    PostgresModelRegistry,
    PostgresRunStore,
    RunRecords,
    RunStore,
)

pytestmark = pytest.mark.service

_DATABASES = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


def fresh_database(postgres: PostgresServer) -> Database:
    """An empty database of its own, not migrated."""
    return Database(postgres.create_database(f"test_{os.getpid()}_{next(_DATABASES)}"), max_connections=16)


@pytest.fixture
def database(postgres) -> Iterator[Database]:
    opened = fresh_database(postgres)
    yield opened
    opened.close()


@dataclass
class State:
    registry: ModelVersions
    runs: RunRecords
    rewrite_version: Callable[[str, str, Callable[[str], str]], None]  # (model, version, edit)


def file_state(root: Path) -> State:
    def rewrite(model: str, version: str, edit: Callable[[str], str]) -> None:
        path = root / "models" / model / f"{version}.json"
        path.write_text(edit(path.read_text()))

    return State(ModelRegistry(root), RunStore(root), rewrite)


def postgres_state(database: Database) -> State:
    migrate(database)

    def rewrite(model: str, version: str, edit: Callable[[str], str]) -> None:
        with database.connection() as connection:
            [(text,)] = connection.execute("SELECT artifact FROM ppm_model_versions WHERE model = %s AND version = %s",
                                           [model, version]).fetchall()
            connection.execute("UPDATE ppm_model_versions SET artifact = %s WHERE model = %s AND version = %s",
                               [edit(text), model, version])

    return State(PostgresModelRegistry(database), PostgresRunStore(database), rewrite)


@pytest.fixture(params=["files", "postgres"])
def state(request, tmp_path) -> Iterator[State]:
    if request.param == "files":
        yield file_state(tmp_path)
        return
    opened = fresh_database(request.getfixturevalue("postgres"))
    yield postgres_state(opened)
    opened.close()


def concurrently(n: int, call: Callable[[int], object]) -> list:
    """`call(0..n-1)`, all released at once from n threads; their results in order."""
    start = threading.Barrier(n)

    def released(k: int):
        start.wait()
        return call(k)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(released, range(n)))


# The store contract, the same for both backends.

def test_versions_count_up_and_resolve_to_the_promoted_else_the_latest(state):
    v1, stored = state.registry.save("m", {"kind": "linear", "coef": [1.0], "version": "ignored"})
    v2, _ = state.registry.save("m", {"kind": "linear", "coef": [2.0]})
    assert v1.startswith("v1-") and v2.startswith("v2-") and stored["version"] == v1 and stored["model"] == "m"
    assert state.registry.load("m")["coef"] == [2.0] and state.registry.promoted("m") == ""
    assert state.registry.promote("m", v1)["version"] == v1
    assert state.registry.load("m")["coef"] == [1.0] and state.registry.promoted("m") == v1
    assert state.registry.load("m", v2)["coef"] == [2.0]
    assert state.registry.promote("m", "")["version"] == v2  # unpinned: the latest again
    state.registry.save("a", {"kind": "linear", "coef": [3.0]})
    assert [(s["model"], s["version"]) for s in state.registry.list()] == [("a", state.registry.load("a")["version"]),
                                                                         ("m", v2), ("m", v1)]


def test_missing_models_and_versions_are_not_found_and_bad_names_are_refused(state):
    with pytest.raises(NotFound, match="no PPM named 'm'"):
        state.registry.load("m")
    state.registry.save("m", {"kind": "linear"})
    with pytest.raises(NotFound, match="has no version 'v9-00000000'"):
        state.registry.load("m", "v9-00000000")
    with pytest.raises(NotFound):
        state.registry.promote("m", "v9-00000000")
    assert state.registry.promoted("m") == ""
    with pytest.raises(InvalidArgument) as caught:
        state.registry.load("../etc")
    assert caught.value.field == "model"
    with pytest.raises(InvalidArgument) as caught:
        state.runs.record({"experiment": "e", "run_id": "r 1'; DROP TABLE ppm_runs;--", "state": "succeeded"})
    assert caught.value.field == "run.run_id"


def test_a_stored_ppm_changed_after_it_was_saved_is_refused_on_load_and_left_out_of_listings(state, caplog):
    version, _ = state.registry.save("m", {"kind": "linear", "form": {"intercept": 0.6}})

    def better_looking(text: str) -> str:
        stored = json.loads(text)
        stored["form"]["intercept"] = 0.99
        return json.dumps(stored)

    state.rewrite_version("m", version, better_looking)
    with pytest.raises(CorruptState, match="does not match its recorded sha256"):
        state.registry.load("m")
    with caplog.at_level("WARNING"):
        assert state.registry.list() == []
    assert "does not match its recorded sha256" in caplog.text
    state.rewrite_version("m", version, lambda text: "{cut")
    with pytest.raises(CorruptState, match="not valid JSON"):
        state.registry.load("m", version)


def test_a_run_is_recorded_exactly_once_under_concurrent_writers(state):
    run = {"experiment": "exp", "run_id": "r1", "state": "succeeded", "eval_score": 0.6}
    created = concurrently(12, lambda _: state.runs.record(run))
    assert sorted(created) == [False] * 11 + [True]
    assert state.runs.list("exp") == [run]


def test_a_failure_stands_until_a_retry_records_the_result_which_is_final(state):
    failed = {"experiment": "exp", "run_id": "r1", "state": "failed", "failure_reason": "OOMKilled"}
    again = failed | {"failure_reason": "evicted"}
    succeeded = {"experiment": "exp", "run_id": "r1", "state": "succeeded", "eval_score": 0.6}
    other = {"experiment": "exp", "run_id": "r2", "state": "failed", "failure_reason": "evicted"}
    assert state.runs.record(failed) and state.runs.record(other)
    assert state.runs.record(again)  # the latest failure is kept
    assert state.runs.list("exp") == [again, other]
    assert state.runs.record(succeeded)
    assert state.runs.list("exp") == [succeeded, other]
    assert not state.runs.record(failed)  # a straggling attempt cannot undo a result
    assert not state.runs.record(succeeded | {"eval_score": 0.9})  # nor a second result replace it
    assert state.runs.list() == [succeeded, other]


def test_runs_are_listed_by_experiment_then_id_in_code_point_order(state):
    for experiment, run_id in [("b", "r1"), ("a", "r2"), ("a", "R3"), ("a", "r1")]:
        state.runs.record({"experiment": experiment, "run_id": run_id, "state": "succeeded"})
    assert [(r["experiment"], r["run_id"]) for r in state.runs.list()] == [
        ("a", "R3"), ("a", "r1"), ("a", "r2"), ("b", "r1")]
    assert [r["run_id"] for r in state.runs.list("b")] == ["r1"]
    assert state.runs.list("none") == []


def test_concurrent_fits_of_one_model_get_distinct_consecutive_versions(state):
    versions = concurrently(8, lambda k: state.registry.save("m", {"kind": "linear", "coef": [float(k)]})[0])
    assert sorted(int(v.split("-")[0][1:]) for v in versions) == list(range(1, 9))
    assert len(state.registry.list()) == 8


# Versioned migrations.

def test_migrations_apply_once_and_applying_them_again_is_a_no_op(database):
    bundled = bundled_migrations()
    assert [m.version for m in bundled] == list(range(1, len(bundled) + 1))
    assert migrate(database) == bundled
    assert migrate(database) == []
    with database.connection() as connection:
        rows = connection.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert applied_version(connection) == len(bundled)
    assert rows == [(m.version, m.name) for m in bundled]


def test_replicas_starting_together_apply_the_migrations_once(database):
    applied = concurrently(4, lambda _: migrate(database))
    assert sorted(len(a) for a in applied) == [0, 0, 0, len(bundled_migrations())]


def test_a_database_at_a_newer_schema_than_the_code_is_refused(database):
    migrate(database)
    newer = len(bundled_migrations()) + 1
    with database.connection() as connection:
        connection.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, 'from_the_future')", [newer])
    with pytest.raises(SchemaTooNew, match=f"at schema version {newer}, newer than this code's {newer - 1}"):
        open_database(database.url, connect_timeout_s=5)


def test_a_failing_migration_leaves_the_database_as_it_was(database):
    migrations = parse_migrations({"0001_first.sql": "CREATE TABLE first_table (x integer);",
                                   "0002_broken.sql": "CREATE TABLE second_table (x no_such_type);"})
    with pytest.raises(psycopg.errors.UndefinedObject):
        migrate(database, migrations)
    with database.connection() as connection:
        assert connection.execute("SELECT to_regclass('first_table')").fetchone() == (None,)
        assert applied_version(connection) == 0


def test_misnamed_or_misnumbered_migration_files_are_refused():
    with pytest.raises(BadMigrations, match="1..2 with no gap"):
        parse_migrations({"0001_a.sql": "", "0003_c.sql": ""})
    with pytest.raises(BadMigrations, match="NNNN_lowercase_name.sql"):
        parse_migrations({"1_a.sql": ""})


def test_an_unreachable_database_is_unavailable_and_its_password_is_not_shown():
    [port] = free_ports(1)
    with pytest.raises(PeerUnavailable, match="did not accept a connection") as caught:
        Database(f"postgresql://hyper:s3cret@127.0.0.1:{port}/hyper", connect_timeout_s=1)
    assert "s3cret" not in str(caught.value) and "hyper:***@127.0.0.1" in str(caught.value)


# Two ppm replicas sharing one database.

FEATURES = ["rouge::0.00-0.33", "safety_concern::moderate"]


@pytest.fixture(scope="module")
def replicas(postgres, tmp_path_factory) -> Iterator[list]:
    """Two `hyper-ppm` processes, each with a home of its own, on one database."""
    url = postgres.create_database("replicas")
    settings = [local_settings(tmp_path_factory.mktemp(f"replica{k}")).model_copy(
        update={"database_url": url, "ppm_metrics_port": 0}) for k in range(2)]
    with serving_replicas("ppm", settings) as running:
        yield running


def training_run(experiment: str, k: int) -> ppm_pb2.Run:
    return ppm_pb2.Run(run_id=f"job-{k}", experiment=experiment, state="succeeded", eval_score=0.5 + k / 10_000,
                       score="label_accuracy", n_total=1000,
                       count_vector=proto_convert.count_vectors_to_proto(FEATURES, [float(k % 97), float(k % 13)]))


def test_two_replicas_record_runs_from_parallel_jobs_exactly_once_with_none_lost(replicas):
    channels = [serving.channel(s.address("ppm"), s) for s in replicas]
    clients = [PPMClient(ch) for ch in channels]
    runs = [training_run(f"scale-{k % 4}", k) for k in range(300)]
    # A fifth of the Jobs failed once before their retry succeeds.
    for k, run in enumerate(runs[::5]):
        failure = ppm_pb2.Run(run_id=run.run_id, experiment=run.experiment, state="failed", failure_reason="evicted")
        assert clients[k % 2].record_run(failure)
    # Every run reaches both replicas, and one of them a third time: a retried Job, a resent call.
    submissions = [(replica, run) for run in runs for replica in (0, 1, random.Random(run.run_id).randrange(2))]
    random.Random(0).shuffle(submissions)
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        created = list(pool.map(lambda s: (s[1].experiment, s[1].run_id, clients[s[0]].record_run(s[1])),
                                submissions))
    elapsed = time.perf_counter() - started
    print(f"\n{len(submissions)} RecordRun calls over 2 replicas from 16 threads: {elapsed:.2f} s "
          f"({len(submissions) / elapsed:.0f} calls/s)")

    firsts = Counter((experiment, run_id) for experiment, run_id, new in created if new)
    assert len(firsts) == len(runs) and set(firsts.values()) == {1}  # each run created once, by one call
    assert sum(not new for *_, new in created) == 2 * len(runs)  # every duplicate answered as one
    expected = sorted((r.experiment, r.run_id, r.eval_score, r.state) for r in runs)
    for client in clients:  # both replicas see every run, its result, nothing else
        listed = [r for experiment in sorted({r.experiment for r in runs}) for r in client.list_runs(experiment)]
        assert sorted((r.experiment, r.run_id, r.eval_score, r.state) for r in listed) == expected
    for ch in channels:
        ch.close()


def test_a_ppm_fitted_on_one_replica_is_served_and_promoted_by_the_other(replicas):
    channels = [serving.channel(s.address("ppm"), s) for s in replicas]
    first, second = (PPMClient(ch) for ch in channels)
    for k in range(40):
        first.record_run(training_run("shared", k))
    fitted = first.fit("shared", "linear", "shared")
    assert second.info("shared").version == fitted.version
    refitted = second.fit("shared", "linear", "shared", seed=1)
    assert refitted.version.startswith("v2-") and first.current_version("shared") == refitted.version
    second.promote("shared", fitted.version)
    assert first.current_version("shared") == fitted.version
    assert second.artifact("shared") == first.artifact("shared", fitted.version)
    for ch in channels:
        ch.close()
