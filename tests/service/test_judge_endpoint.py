"""The OpenAI-compatible judge against a real local server: vLLM's OpenAI entry point (CPU
build) serving a tiny local Llama, behind a proxy that injects rate limits and server errors.
The tagger runs with `HYPER_JUDGE_BACKEND=openai` and `hyper annotate` runs as a user runs it.
What the tiny model says is noise; that every pair gets its verdict once, through the faults,
with its usage counted and a crashed run resumed, is not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from harness.fault_proxy import FaultProxy
from harness.judge_server import MODEL_NAME
from harness.judge_server import judge_server as tiny_judge_server
from harness.local import REPO, local_settings
from hyper.data import dataset_files
from hyper.judges.pairwise import judge_message

pytestmark = [pytest.mark.vllm, pytest.mark.service]

PANDALM = REPO / "data" / "pandalm-testset.jsonl.gz"


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    """`vllm serve` of a tiny local Llama on a loopback port (the OpenAI entry point)."""
    corpus = [i.prompt[:500] for i in dataset_files.read_dataset(PANDALM).instances[:300]]
    with tiny_judge_server(tmp_path_factory.mktemp("judge-server"), corpus) as url:
        yield url


@pytest.fixture(scope="module")
def proxy(judge_server):
    with FaultProxy(judge_server, rate_limit_every=4, error_every=7) as running:
        yield running


@pytest.fixture(scope="module")
def services(proxy, tmp_path_factory):
    from hyper.infra.local_processes import LocalProcesses

    settings = local_settings(tmp_path_factory.mktemp("judge-home")).model_copy(update={
        "judge_backend": "openai", "judge_url": proxy.url, "judge_model": MODEL_NAME, "judge_concurrency": 4,
        "judge_price_prompt_per_million": 0.5, "judge_price_completion_per_million": 1.5})
    processes = LocalProcesses(settings)
    processes.up()
    yield settings
    processes.down()


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """24 PandaLM pairs with every label removed: what a team sends to its judge."""
    path = tmp_path_factory.mktemp("data") / "pandalm-unlabelled.jsonl"
    rows = [{"id": i.id, "prompt": i.prompt, "response_a": i.response_a, "response_b": i.response_b}
            for i in dataset_files.read_dataset(PANDALM).instances[:24]]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def annotate(settings, data, out) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyper.cli", "annotate", str(data), "--out", str(out),
                           "--source", MODEL_NAME, "--chunk", "8"],
                          env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=600)


def asked_pairs(messages: list[str], instances) -> set[str]:
    """The pairs whose judge messages are among `messages` (requests the server answered)."""
    asked = set(messages)
    return {i.id for i in instances if {judge_message(i, False), judge_message(i, True)} & asked}


def test_annotate_through_faults_judges_every_distinct_pair_once_and_counts_usage(services, proxy, unlabelled,
                                                                                 tmp_path):
    out = tmp_path / "judged.jsonl"
    done = annotate(services, unlabelled, out)
    assert done.returncode == 0, done.stderr
    instances = dataset_files.read_dataset(unlabelled).instances
    labelled = dataset_files.read_dataset(out, "plain").instances
    assert [i.id for i in labelled] == [i.id for i in instances]
    assert all(i.labels[MODEL_NAME] in ("A", "B", "tie") for i in labelled)  # constrained: every reply parses
    assert all(0.0 <= i.judge_confidence <= 1.0 for i in labelled)
    distinct = list({i.content_key(): i for i in reversed(instances)}.values())  # 2 of the 24 repeat a pair
    expected = [judge_message(i, swapped) for i in distinct for swapped in (False, True)]
    assert sorted(proxy.forwarded) == sorted(expected)  # each distinct pair asked once in each order
    faults = proxy.faults["429"] + proxy.faults["500"]
    assert faults >= 10
    assert f"requests       {2 * len(distinct) + faults} ({faults} retries); 0 replies did not parse" in done.stdout
    assert "cost 0.0" in done.stdout and "pairs/s" in done.stdout
    assert not (tmp_path / ".judged.jsonl.journal").exists()


def test_a_run_that_fails_midway_resumes_without_judging_finished_pairs_again(services, proxy, unlabelled, tmp_path):
    # Pairs the tagger's verdict cache has not seen (the test above judged `unlabelled`).
    rows = [json.loads(line) for line in unlabelled.read_text().splitlines()]
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text("".join(json.dumps(row | {"prompt": row["prompt"] + " (again)"}) + "\n" for row in rows))
    out = tmp_path / "judged.jsonl"
    instances = dataset_files.read_dataset(unlabelled).instances
    proxy.forwarded.clear()
    first_chunks = 2 * 8 * 2  # two chunks of 8 pairs, both orders
    proxy.received, proxy.rate_limit_every, proxy.error_every = 0, 0, 0

    def refuse_after_two_chunks():
        deadline = time.monotonic() + 300
        while len(proxy.forwarded) < first_chunks and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy.refuse = True

    watcher = __import__("threading").Thread(target=refuse_after_two_chunks, daemon=True)
    watcher.start()
    failed = annotate(services, unlabelled, out)
    watcher.join(timeout=300)
    assert failed.returncode != 0 and "UNAVAILABLE" in failed.stderr and not out.exists()
    journal = [json.loads(line) for line in (tmp_path / ".judged.jsonl.journal").read_text().splitlines()]
    finished = {p["id"] for entry in journal for p in entry["judged"]}
    assert len(finished) >= 16
    proxy.refuse = False
    before = len(proxy.forwarded)
    resumed = annotate(services, unlabelled, out)
    assert resumed.returncode == 0, resumed.stderr
    again = asked_pairs(proxy.forwarded[before:], instances)
    assert not again & finished  # no finished pair judged again
    assert f"({len(finished)} from an earlier run's journal)" in resumed.stdout
    assert len(dataset_files.read_dataset(out, "plain").instances) == 24


def test_without_constrained_output_replies_are_parsed_and_the_unparsed_leave_no_label(proxy, unlabelled, tmp_path):
    """A server without structured outputs: the tiny model's free text rarely names a verdict,
    so most pairs get no AI label, and the output says how many (Route sends them to humans)."""
    from hyper.infra.local_processes import LocalProcesses

    settings = local_settings(tmp_path / "home").model_copy(update={
        "judge_backend": "openai", "judge_url": proxy.url, "judge_model": MODEL_NAME, "judge_constrained": False,
        "judge_logprobs": False})
    proxy.refuse, proxy.rate_limit_every, proxy.error_every = False, 0, 0
    processes = LocalProcesses(settings)
    processes.up()
    try:
        done = annotate(settings, unlabelled, tmp_path / "judged.jsonl")
    finally:
        processes.down()
    assert done.returncode == 0, done.stderr
    labelled = dataset_files.read_dataset(tmp_path / "judged.jsonl", "plain").instances
    without = sum(MODEL_NAME not in i.labels for i in labelled)
    unparsed = int(re.search(r"(\d+) replies did not parse", done.stdout).group(1))
    assert unparsed > 0 and f"none on {without} (no reply parsed" in done.stdout
    assert all(i.judge_confidence is None for i in labelled if MODEL_NAME not in i.labels)
    # a pair loses its label only when both its replies failed (a repeated pair is asked once)
    assert 2 * len({i.content_key() for i in labelled if MODEL_NAME not in i.labels}) <= unparsed


def test_descriptive_tags_from_the_endpoint_land_in_the_value_sets_through_faults(proxy):
    """`HYPER_TAGGING_BACKEND=openai`: the tagging prompt to the judge's endpoint, its reply held
    to the tag schema; through rate limits and server errors every prompt gets one value of each
    scalar dimension and one to three subjects (what the tiny model picks is noise)."""
    from hyper.core.catalogue import DESCRIPTIVE_VALUES
    from hyper.judges.openai_endpoint import EndpointConfig
    from hyper_tagger.descriptive import DESCRIPTIVE_FEATURES
    from hyper_tagger.endpoint_tags import EndpointDescriptiveTagger
    from hyper_tagger.llm import SCALAR

    proxy.refuse, proxy.rate_limit_every, proxy.error_every = False, 3, 5
    faults_before = proxy.faults["429"] + proxy.faults["500"]
    prompts = [i.prompt for i in dataset_files.read_dataset(PANDALM).instances if len(i.prompt) < 400][:10]
    tagger = EndpointDescriptiveTagger(EndpointConfig(base_url=proxy.url, model=MODEL_NAME, concurrency=4,
                                                      backoff_s=0.05))
    bits = tagger.tag(prompts)
    faults = proxy.faults["429"] + proxy.faults["500"] - faults_before
    assert faults > 0 and tagger.usage.requests == len(prompts) + faults and tagger.usage.retries == faults

    def chosen(dimension: str) -> np.ndarray:
        columns = [DESCRIPTIVE_FEATURES.index(f"{dimension}::{value}") for value in DESCRIPTIVE_VALUES[dimension]]
        return bits[:, columns].sum(axis=1)

    for dimension in SCALAR:
        assert (chosen(dimension) == 1).all(), dimension
    assert ((chosen("subject_of_expertise") >= 1) & (chosen("subject_of_expertise") <= 3)).all()
    assert tagger.name.startswith(f"openai:{MODEL_NAME}:")


def test_bench_tags_measures_the_endpoint_tagger_on_the_same_sets(judge_server, tmp_path):
    """`python -m bench.tags --backend openai`, a smoke run of 12 prompts: its figures are the
    tiny model's noise; that it runs on the test set and reports every measure is the point."""
    env = {**os.environ, "HYPER_JUDGE_URL": judge_server, "HYPER_JUDGE_MODEL": MODEL_NAME,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    finished = subprocess.run([sys.executable, "-m", "bench.tags", "--backend", "openai", "--limit", "12",
                               "--out", str(tmp_path / "tags.json")], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-4000:]
    result = json.loads((tmp_path / "tags-openai.json").read_text())
    assert result["n_prompts"] == 12 and result["before"]["name"].startswith("prototypes")
    assert result["after"]["name"].startswith(f"openai:{MODEL_NAME}:")
    assert 0.0 <= result["after"]["safety_red_team_auc"]["mean"] <= 1.0
    assert set(result["after"]["hand"]) == set(result["before"]["hand"]) and result["paired"]
