"""More than two sources over the session's real services: `hyper train --paid-source` fits a
PPM with columns for the human and a paid judge (scored by an rm-trainer Job in labels mode),
and Route spends a money budget across the human, the paid judge and the free judge."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
import sys

import pytest

from harness.local import REPO
from hyper.api.clients import PPMClient

pytestmark = pytest.mark.service


def hyper(services, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyper.cli", *args], env={**os.environ, **services.to_env()},
                          capture_output=True, text=True, timeout=900)


def test_a_three_source_ppm_routes_a_money_budget_across_them(services, channels, tmp_path):
    with gzip.open(REPO / "data" / "pandalm-testset.jsonl.gz", "rt") as source:
        lines = list(itertools.islice(source, 300))
    (tmp_path / "history.jsonl").write_text("".join(lines[:200]))
    (tmp_path / "batch.jsonl").write_text("".join(lines[200:]))
    trained = hyper(services, "train", str(tmp_path / "history.jsonl"), "--human-source", "annotator1",
                    "--ai-source", "pandalm-7b", "--paid-source", "gpt-3.5-turbo", "--mixes", "60",
                    "--ppm-model", "three")
    assert trained.returncode == 0, trained.stderr[-3000:]
    names = PPMClient(channels["ppm"]).info("three").feature_names
    assert any(n.startswith("gpt-3.5-turbo|") for n in names) and any("|" not in n for n in names)

    routed = hyper(services, "route", str(tmp_path / "batch.jsonl"), "--ppm-model", "three", "--ai-source",
                   "pandalm-7b", "--source", "human=1", "--source", "gpt-3.5-turbo=0.1", "--budget", "$15",
                   "--strategy", "optimize", "--page-size", "7", "--out", str(tmp_path / "route.json"))
    assert routed.returncode == 0, routed.stderr[-3000:]
    result = json.loads((tmp_path / "route.json").read_text())
    by_source = result["n_by_source"]
    assert set(by_source) <= {"human", "gpt-3.5-turbo", "ai"} and sum(by_source.values()) == 100
    assert len(result["assignments"]) == 100  # 15 pages of 7 written one after the other
    assert result["total_cost"] <= 15 + 1e-9
    spent = by_source.get("human", 0) * 1.0 + by_source.get("gpt-3.5-turbo", 0) * 0.1
    assert spent == pytest.approx(result["total_cost"])

    wrong = hyper(services, "train", str(tmp_path / "history.jsonl"), "--human-source", "annotator1",
                  "--ai-source", "pandalm-7b", "--paid-source", "gpt-5", "--mixes", "60")
    assert wrong.returncode == 2 and "paid_sources: no row has label_gpt-5" in wrong.stderr
