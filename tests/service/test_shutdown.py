"""A real server process told to stop (SIGTERM): it exits 0 once drained, and one that something
holds past its drain names every thread's stack in its log and exits 1 in bounded time."""

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from harness.local import free_ports
from harness.polling import wait_for
from hyper.api import serving
from hyper.core.settings import Settings

pytestmark = pytest.mark.service

SERVER = """
import sys, threading
from hyper.api import serving
from hyper.core.settings import Settings

def hold_the_process_forever():
    threading.Event().wait()

if sys.argv[2] == "held":
    threading.Thread(target=hold_the_process_forever).start()
settings = Settings(tagger_port=int(sys.argv[1]), tagger_metrics_port=0)
serving.Server(settings, "tagger", []).serve_until_signal(grace_seconds=0.5, exit_overrun_s=2.0)
"""


def signal_the_process(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)


def signal_a_thread_other_than_main(process: subprocess.Popen) -> None:
    """What the kernel may do with a process-directed SIGTERM: hand it to any thread. Python runs
    its handler only when the main thread next runs, so a main thread blocked for good slept through
    it (CI, twice: the tagger still serving 30 s after SIGTERM)."""
    other = next(int(tid) for tid in os.listdir(f"/proc/{process.pid}/task") if int(tid) != process.pid)
    if ctypes.CDLL(None, use_errno=True).tgkill(process.pid, other, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


def stop_server(held: bool, send_stop: Callable[[subprocess.Popen], None] = signal_the_process,
                ) -> tuple[int, float, str]:
    """The exit code, seconds from SIGTERM to exit, and stderr of a server told to stop."""
    (port,) = free_ports(1)
    settings = Settings(tagger_port=port)
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), "held" if held else "free"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: serving.health_status(settings.address("tagger"), settings) == "SERVING",
                 "the server to serve", timeout=60)
        started = time.monotonic()
        send_stop(process)
        _, stderr = process.communicate(timeout=30)
        return process.returncode, time.monotonic() - started, stderr
    finally:
        process.kill()


def test_a_drained_server_exits_cleanly():
    code, seconds, stderr = stop_server(held=False)
    assert code == 0 and seconds < 2.5, (code, seconds, stderr[-2000:])
    assert "Thread 0x" not in stderr


def test_a_stop_signal_handed_to_another_thread_still_stops_the_server():
    code, seconds, stderr = stop_server(held=False, send_stop=signal_a_thread_other_than_main)
    assert code == 0 and seconds < 2.5, (code, seconds, stderr[-2000:])


def test_a_server_held_past_its_drain_names_what_holds_it_and_exits():
    code, seconds, stderr = stop_server(held=True)
    assert code == 1, stderr[-2000:]
    assert 2.5 <= seconds < 10, seconds  # the drain's 0.5 s and the overrun's 2 s, not the caller's 30
    assert "hold_the_process_forever" in stderr  # the held thread's stack
