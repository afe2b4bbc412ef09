"""The fast feature set as a user runs it: a real tagger process on the distilled static model,
with NER in two worker processes, answers Tag over gRPC with the entity values one in-process
pipeline gives; killed outright, it leaves no worker behind."""

import signal
from pathlib import Path

import numpy as np
import pytest

from harness.local import free_ports
from harness.polling import wait_for
from hyper.api import proto_convert
from hyper.core.settings import Settings
from hyper.v1 import tagger_pb2
from hyper_tagger.textual import entity_similarity, load_ner
from tests.service.test_tagging_resume import start_tagger, tag

pytestmark = pytest.mark.service

PAIRS = 100  # 200 responses: more than one chunk of texts per NER worker


def ner_workers(parent: int) -> list[int]:
    """The parent's children that multiprocessing spawned (not its resource tracker)."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent_pid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):  # gone while read
            continue
        if parent_pid == parent and b"spawn_main" in command:
            workers.append(int(stat.parent.name))
    return workers


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_fast_tagger_serves_and_a_killed_one_leaves_no_ner_worker(tmp_path, hh_dataset):
    tagger_port, metrics_port = free_ports(2)
    settings = Settings(home=tmp_path / "home", redis_url="", tagger_port=tagger_port,
                        tagger_metrics_port=metrics_port, embedding_runtime="static", ner_processes=2)
    instances = hh_dataset.instances[:PAIRS]
    process, workers = start_tagger(settings, tmp_path / "tagger.log"), []
    try:
        workers = ner_workers(process.pid)
        assert len(workers) == 2
        response = tag(settings, tagger_pb2.TagRequest(
            instances=[proto_convert.instance_to_proto(i) for i in instances]))
        served = np.array([row.values["entity_sim"] for row in response.raw])
        expected = entity_similarity(load_ner(settings.ner_model), [i.response_a for i in instances],
                                     [i.response_b for i in instances])
        # The feature cache holds float32, so the served values are the in-process ones so rounded.
        assert np.array_equal(served, expected.astype(np.float32)) and response.cache_misses == PAIRS
        assert all(np.isfinite(list(row.values.values())).all() for row in response.raw)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    wait_for(lambda: not any(running(pid) for pid in workers), "the NER workers to leave", timeout=15)
