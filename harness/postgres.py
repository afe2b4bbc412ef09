"""A throwaway real PostgreSQL server from Debian's `postgresql` package (installed by `make
test`'s set-up): initdb in a temporary directory, `postgres` on a free loopback port with
password authentication, removed at the end. Debian keeps the server binaries off PATH, in
/usr/lib/postgresql/<major>/bin. The server refuses to run as root, so under root (CI) it runs
as the package's `postgres` user. Without the package, the tests that need it are skipped,
saying so."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from harness.local import free_ports
from harness.polling import wait_for

USER = "hyper"


def server_binaries() -> Path | None:
    """The bin directory of the newest PostgreSQL server installed, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


@dataclass
class PostgresServer:
    host: str
    port: int
    password: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)


def _server_user() -> dict:
    """Popen's arguments that run the server as the package's `postgres` user under root."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def _owned_by_server_user(directory: Path) -> None:
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")  # created by Debian's postgresql package
        os.chown(directory, account.pw_uid, account.pw_gid)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's server is not installed (/usr/lib/postgresql/*/bin/initdb): "
                    "`make test` installs it (apt-get install postgresql)")
    # Not under pytest's root-only temporary directory: the server's user must reach it.
    directory = Path(tempfile.mkdtemp(prefix="hyper-postgres-"))
    directory.chmod(0o755)
    _owned_by_server_user(directory)
    data, password = directory / "data", secrets.token_hex(16)
    password_file = directory / "password"
    password_file.write_text(password)
    _owned_by_server_user(password_file)
    subprocess.run([str(binaries / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(password_file),
                    "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=120, **_server_user())
    [port] = free_ports(1)
    # Durability off: a test server, thrown away at the end.
    server = subprocess.Popen([
        str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
        "-c", f"unix_socket_directories={directory}", "-c", "fsync=off", "-c", "synchronous_commit=off",
        "-c", "full_page_writes=off", "-c", "max_connections=200"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_server_user())
    running = PostgresServer("127.0.0.1", port, password)
    try:
        wait_for(lambda: _accepts_connections(running, server), "PostgreSQL to accept connections", timeout=60)
        yield running
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: clients still connected are cut off
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def _accepts_connections(running: PostgresServer, server: subprocess.Popen) -> bool:
    if server.poll() is not None:
        raise RuntimeError(f"postgres exited with {server.returncode} during start-up")
    try:
        psycopg.connect(running.url(), connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False
