"""The embedded default: the services as local processes on loopback ports.

`hyper up` runs each service's own entry point (the container command) as a detached child,
records its pid and ports under <home>/run/state.json and waits until gRPC health says
SERVING; `hyper down` stops them with SIGTERM (they drain in-flight RPCs), SIGKILL as a last
resort. Unless the user gives an access policy, the services admit only holders of the token
under <home>/access (readable by the user alone; clients with that home present it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hyper.api.access import local_access_files
from hyper.api.serving import health_status
from hyper.core.atomic_files import write_json_atomic
from hyper.core.errors import HyperError
from hyper.core.settings import Settings

SERVICES = ("ppm", "tagger", "router")
#: Seconds `hyper down` gives a service between SIGTERM and SIGKILL.
STOP_TIMEOUT_S = 15.0


class ServiceFailed(HyperError):
    pass


def _alive(pid: int) -> bool:
    try:  # reap it first if it is our own child, or a dead child would look alive (zombie)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class LocalProcesses:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = settings.home.resolve()
        self.state_path = self.home / "run" / "state.json"

    def _state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    def _write_state(self, state: dict) -> None:
        write_json_atomic(self.state_path, state)

    def log_path(self, service: str) -> Path:
        return self.home / "logs" / f"{service}.log"

    def _spawn(self, service: str) -> dict:
        log_path = self.log_path(service)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = os.environ | self.settings.to_env() | self.access_env() | {"PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen([sys.executable, "-m", f"hyper_{service}.server"], env=env,
                                       stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        return {"pid": process.pid, "address": self.settings.address(service),
                "metrics_port": getattr(self.settings, f"{service}_metrics_port"),
                "log": str(log_path)}

    def access_env(self) -> dict[str, str]:
        """Without a policy of the user's, the services admit the holders of a token only the
        user can read (local_access=owner), and present it to each other."""
        if self.settings.access_policy or self.settings.local_access == "open":
            return {}
        token_file, policy_file = local_access_files(self.home)
        return {"HYPER_ACCESS_POLICY": str(policy_file), "HYPER_CALLER_TOKEN": token_file.read_text()}

    def _wait_serving(self, service: str, entry: dict, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not _alive(entry["pid"]):
                tail = Path(entry["log"]).read_text(errors="replace")[-2000:]
                raise ServiceFailed(f"{service} exited during start-up; log tail:\n{tail}")
            if health_status(entry["address"], self.settings) == "SERVING":
                return
            time.sleep(0.2)
        raise ServiceFailed(f"{service} not SERVING after the start-up timeout; see {entry['log']}")

    def up(self, timeout: float = 180.0) -> dict:
        state = self._state()
        started = {}
        for service in SERVICES:
            entry = state.get(service)
            if entry and _alive(entry["pid"]):
                continue
            started[service] = state[service] = self._spawn(service)
        self._write_state(state)
        deadline = time.monotonic() + timeout
        try:
            for service, entry in started.items():
                self._wait_serving(service, entry, deadline)
        except ServiceFailed:
            self.down()
            raise
        return state

    def down(self, timeout: float = STOP_TIMEOUT_S) -> dict[str, str]:
        """Each recorded service and how it ended: "stopped" (by SIGTERM) or "killed" (still
        alive `timeout` s later, so SIGKILL: its log says what held it)."""
        state = self._state()
        for entry in state.values():
            if _alive(entry["pid"]):
                os.kill(entry["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        ended = {}
        for service, entry in state.items():
            while _alive(entry["pid"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            ended[service] = "killed" if _alive(entry["pid"]) else "stopped"
            if ended[service] == "killed":
                os.kill(entry["pid"], signal.SIGKILL)
        self.state_path.unlink(missing_ok=True)
        return ended

    def status_entry(self, service: str) -> dict:
        """What `up` recorded of a running service: pid, address, metrics port, log."""
        return self._state()[service]

    def status(self) -> dict[str, str]:
        state = self._state()
        return {service: (health_status(state[service]["address"], self.settings)
                          if service in state and _alive(state[service]["pid"]) else "STOPPED")
                for service in SERVICES}
