"""A power loss while runs are recorded and routes saved: the services are SIGKILLed mid-write,
every file under their home is cut back to its last fsync, and they start again. Whatever they
acknowledged before is all there; whatever was in flight is whole or absent, never a broken
listing."""

from __future__ import annotations

import os
import signal
import threading

import grpc
import pytest

from harness import faults
from harness.power_loss import JOURNAL_ENV, lose_power, record_fsyncs, recording_env
from hyper.api import proto_convert
from hyper.api.clients import PPMClient, RouterClient
from hyper.v1 import ppm_pb2

pytestmark = pytest.mark.service
FEATURES = ["f0", "f1"]


def run(k: int) -> ppm_pb2.Run:
    """Even runs succeed (recorded exactly once), odd ones fail (a failure record, replaceable)."""
    if k % 2:
        return ppm_pb2.Run(run_id=f"r{k}", experiment="power", state="failed", failure_reason=f"attempt {k}")
    return ppm_pb2.Run(run_id=f"r{k}", experiment="power", state="succeeded", eval_score=k / 1000, n_human=k,
                       n_total=100, count_vector=proto_convert.count_vectors_to_proto(FEATURES, [float(k), 1.0]))


def until_refused(work, acknowledged: list, stop: threading.Event) -> None:
    """Calls work(k) for k = 0, 1, ... and keeps what each acknowledged, until a call fails."""
    k = 0
    while not stop.is_set():
        try:
            acknowledged.append(work(k))
        except grpc.RpcError:
            return
        k += 1


def test_nothing_acknowledged_is_lost_to_a_power_loss_during_run_recording_and_route_saving(
        tmp_path, hh_dataset, monkeypatch):
    for name, value in recording_env(tmp_path / "recorder").items():
        monkeypatch.setenv(name, value)
    journal = tmp_path / "recorder" / "fsyncs.log"
    stop_recording = record_fsyncs(str(journal))  # this process writes the services' state.json
    pairs = hh_dataset.instances[:40]
    with faults.System.running(tmp_path / "system") as system:
        ppm, router = PPMClient(system.channel("ppm")), RouterClient(system.channel("router"))
        runs: list[ppm_pb2.Run] = []
        routes: list[str] = []
        stop = threading.Event()
        writers = [threading.Thread(target=until_refused, args=(work, done, stop)) for work, done in (
            (lambda k: (ppm.record_run(run(k)), run(k))[1], runs),
            (lambda k: router.route(faults.route_request(faults.fresh_pairs(pairs, 40))).route_id, routes))]
        for writer in writers:
            writer.start()
        while len(runs) < 40 or len(routes) < 4:  # both writing, and much already acknowledged
            stop.wait(0.05)
        for service in ("ppm", "router", "tagger"):  # the power goes: every process at once
            os.kill(system.pid(service), signal.SIGKILL)
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
        stop_recording()
        cut = lose_power(system.settings.home, journal)
        monkeypatch.delenv(JOURNAL_ENV)
        system.processes.up()
        ppm, router = PPMClient(system.channel("ppm")), RouterClient(system.channel("router"))
        listed = {r.run_id: r for r in ppm.list_runs("power")}
        for sent in runs:
            assert listed[sent.run_id].state == sent.state and listed[sent.run_id].eval_score == sent.eval_score
        for route_id in routes:
            saved = router.get_route(route_id)
            assert saved.n_instances == 40 and len(saved.assignments) == 40
        assert runs and routes and cut > 0  # the loss did cut files (logs, caches, what was in flight)
