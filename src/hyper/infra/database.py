"""PostgreSQL for the state that replicas share (ppm's runs and registry; any service's store).

A `Database` is a pool of connections to one URL, opened once per process; `migrate` brings
its schema to the version this code knows, in one transaction, from the numbered SQL files in
hyper/infra/migrations (0001_name.sql, 0002_name.sql, ...). Every migration applied is a row of
schema_migrations, so applying them again is a no-op, and a database already at a newer version
than the code (a rollback of the image after an upgrade) is refused rather than written to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from hyper.core.errors import HyperError, PeerUnavailable

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# One lock id for every process migrating the same database: replicas starting together queue.
_MIGRATION_LOCK = 0x68797065  # "hype"


class SchemaTooNew(HyperError):
    """The database was migrated by a newer version of the code than this one."""


class BadMigrations(HyperError):
    """The migration files shipped with the code are misnamed or misnumbered."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in hyper/infra/migrations, by version."""
    directory = resources.files("hyper.infra.migrations")
    return parse_migrations({entry.name: entry.read_text() for entry in directory.iterdir()
                             if entry.name.endswith(".sql")})


def parse_migrations(files: dict[str, str]) -> list[Migration]:
    """Migrations from {file name: SQL}; versions must run 1, 2, 3, ... without a gap."""
    migrations = []
    for name, sql in files.items():
        match = _MIGRATION_NAME.match(name)
        if not match:
            raise BadMigrations(f"migration file {name!r} is not named NNNN_lowercase_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), sql))
    migrations.sort(key=lambda m: m.version)
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise BadMigrations(f"migration versions must be 1..{len(numbers)} with no gap or repeat: {numbers}")
    return migrations


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


class Database:
    """A pool of connections; `connection()` is one transaction (committed when the block ends,
    rolled back if it raises). An unreachable server is PeerUnavailable: gRPC UNAVAILABLE, which
    callers retry."""

    def __init__(self, url: str, max_connections: int = 8, connect_timeout_s: float = 60.0):
        self.url = url
        self.pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False,
                                   timeout=connect_timeout_s, check=ConnectionPool.check_connection,
                                   name="hyper")
        try:
            self.pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as error:
            self.pool.close()
            raise PeerUnavailable(f"the state database {redacted(url)} did not accept a connection "
                                  f"within {connect_timeout_s:.0f} s (HYPER_DATABASE_URL)") from error

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection() as connection:
                yield connection
        except (psycopg.OperationalError, PoolTimeout) as error:
            raise PeerUnavailable(f"the state database {redacted(self.url)} is unavailable: {error}") from error

    def close(self) -> None:
        self.pool.close()


def applied_version(connection: psycopg.Connection) -> int:
    """The highest migration applied (0 on an empty database)."""
    exists = connection.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = connection.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(database: Database, migrations: list[Migration] | None = None) -> list[Migration]:
    """Applies the migrations the database has not had yet, all in one transaction (all or
    none); returns those applied. Concurrent callers wait on one advisory lock."""
    migrations = bundled_migrations() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    with database.connection() as connection:
        connection.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
        connection.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                           "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        current = applied_version(connection)
        if current > latest:
            raise SchemaTooNew(f"the state database {redacted(database.url)} is at schema version {current}, "
                               f"newer than this code's {latest}: run the newer release, or restore a backup "
                               "taken before the upgrade")
        pending = [m for m in migrations if m.version > current]
        for migration in pending:
            connection.execute(migration.sql.encode())  # bytes: a script of several statements, no parameters
            connection.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                               [migration.version, migration.name])
    return pending


def open_database(url: str, max_connections: int = 8, connect_timeout_s: float = 60.0) -> Database:
    """A Database at the schema this code knows: what a service calls once at start-up."""
    database = Database(url, max_connections, connect_timeout_s)
    try:
        migrate(database)
    except BaseException:
        database.close()
        raise
    return database
