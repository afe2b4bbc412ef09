"""`hyper down` on real processes: SIGTERM first, SIGKILL for one still alive at the deadline,
and it says which of the two ended each service."""

import subprocess
import sys

from harness.polling import wait_for
from hyper.core.atomic_files import write_json_atomic
from hyper.core.settings import Settings
from hyper.infra.local_processes import LocalProcesses, _alive

IGNORES_SIGTERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('ready', flush=True); time.sleep(120)")


def test_down_stops_by_sigterm_and_kills_and_names_what_it_had_to_kill(tmp_path):
    obeys = subprocess.Popen(["sleep", "120"])
    ignores = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE, text=True)
    try:
        assert ignores.stdout.readline().strip() == "ready"  # its SIGTERM handler is in place
        processes = LocalProcesses(Settings(home=tmp_path))
        write_json_atomic(processes.state_path, {"ppm": {"pid": obeys.pid}, "tagger": {"pid": ignores.pid}})
        assert processes.down(timeout=1.0) == {"ppm": "stopped", "tagger": "killed"}
        wait_for(lambda: not _alive(obeys.pid) and not _alive(ignores.pid), "both to be gone", timeout=10)
        assert not processes.state_path.exists()
    finally:
        obeys.kill()
        ignores.kill()
