"""Shared fixtures: real service processes on free loopback ports, and small real datasets."""

from __future__ import annotations

import pytest

from harness.local import HH_DATA, free_ports, local_settings
from hyper.data import dataset_files


@pytest.fixture(scope="session")
def hh_dataset():
    return dataset_files.read_dataset(HH_DATA)


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    """tagger, ppm and router started by `hyper up`'s own code, stopped at the end."""
    from hyper.infra.local_processes import LocalProcesses

    settings = local_settings(tmp_path_factory.mktemp("hyper-home"))
    processes = LocalProcesses(settings)
    processes.up()
    yield settings
    killed = [service for service, how in processes.down().items() if how == "killed"]
    assert not killed, {service: processes.log_path(service).read_text()[-3000:] for service in killed}


@pytest.fixture(scope="module")
def channels(services):
    """gRPC channels to the session's tagger, ppm and router."""
    from hyper.api import serving

    opened = {name: serving.channel(services.address(name), services)
              for name in ("tagger", "ppm", "router")}
    yield opened
    for ch in opened.values():
        ch.close()


@pytest.fixture(scope="module")
def gateway_url(services):
    """`hyper-gateway` as a real process on a free loopback port, in front of the services."""
    import os
    import subprocess
    import sys
    import urllib.request

    from harness.polling import wait_for

    [port] = free_ports(1)
    env = {**os.environ, **services.to_env(), "HYPER_GATEWAY_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "hyper_gateway.server"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def alive() -> bool:
        assert process.poll() is None, "the gateway exited during start-up"
        try:
            return urllib.request.urlopen(f"{url}/livez", timeout=2).status == 200
        except OSError:
            return False

    wait_for(alive, "the gateway's /livez", timeout=30)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A throwaway real redis-server on a unix socket (installed by `make test`'s set-up)."""
    import shutil
    import subprocess
    import time

    import redis

    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: `make test` installs it (apt-get install redis-server)"
    directory = tmp_path_factory.mktemp("redis")
    socket_path = directory / "redis.sock"
    process = subprocess.Popen([binary, "--port", "0", "--unixsocket", str(socket_path),
                                "--save", "", "--appendonly", "no", "--dir", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"unix://{socket_path}"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)
