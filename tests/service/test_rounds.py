"""`hyper rounds` over the session's real services: a PPM trained per round (the training loop
and its rm-trainer Job), each batch routed over gRPC, the routed pairs' human labels joining
the next round's training, against the same data routed at once."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness.local import REPO
from hyper.method.rounds import budget_per_round, run_rounds, split_batches

pytestmark = pytest.mark.service


def test_budgets_and_batches_split_evenly():
    assert budget_per_round(10, 3) == [4, 3, 3] and sum(budget_per_round(7, 7)) == 7
    batches = split_batches(10, 3, seed=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(10)) and [len(b) for b in batches] == [4, 3, 3]


def test_each_round_learns_from_the_pairs_the_last_sent_to_humans():
    seen = []

    def fit(training):
        seen.append(list(training))
        return len(training)

    def route(model, batch, budget):
        return np.array([k < budget for k in range(len(batch))])

    result = run_rounds([0, 1], [[10, 11, 12], [20, 21, 22]], 4, fit, route, collect=lambda rows: rows)
    assert seen == [[0, 1], [0, 1, 10, 11]]
    assert [r.n_human for r in result.rounds] == [2, 2] and [r.model for r in result.rounds] == [2, 4]


def test_hyper_rounds_over_the_services(services, tmp_path):
    data = tmp_path / "pandalm-240.jsonl"
    with gzip.open(REPO / "data" / "pandalm-testset.jsonl.gz", "rt") as source:
        data.write_text("".join(itertools.islice(source, 240)))
    out = tmp_path / "rounds.json"
    done = subprocess.run([sys.executable, "-m", "hyper.cli", "rounds", str(data), "--human-source", "annotator1",
                           "--ai-source", "gpt-3.5-turbo", "--judge", "pandalm-7b", "--rounds", "2", "--mixes", "30",
                           "--out", str(out)], env={**os.environ, **services.to_env()}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "round 2: PPM v" in done.stdout and "fitted on" in done.stdout
    result = json.loads(out.read_text())
    assert result["new"] == 168 and result["total_budget"] == 42
    for name in ("one-shot", "2 rounds"):
        assert result[name]["n_human"] == 42 and 0.5 < result[name]["label_accuracy"] <= 1.0
    assert len(result["2 rounds"]["ppm_versions"]) == 2
    assert len(set(result["2 rounds"]["ppm_versions"])) == 2  # refitted on the first round's labels
