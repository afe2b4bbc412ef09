"""`hyper demo` as a user runs it: a real CLI process that starts the services, trains a PPM
on human-labelled data, routes the data over gRPC, writes the result and stops everything."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import HH_DATA, local_settings

pytestmark = pytest.mark.e2e


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyper.cli", *args], env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def small_hh(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "hh-300.jsonl.gz"
    with gzip.open(HH_DATA, "rt") as source, gzip.open(path, "wt") as out:
        out.writelines(itertools.islice(source, 300))
    return path


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    settings = local_settings(tmp_path_factory.mktemp("demo-home"))
    return dict(os.environ, **settings.to_env())


def test_demo_routes_the_data_end_to_end_and_a_second_run_reuses_the_runs(small_hh, cli_env, tmp_path):
    out = tmp_path / "routing.json"
    args = ["demo", str(small_hh), "--budget", "0.25", "--mixes", "10", "--out", str(out)]
    first = run_cli(args, cli_env)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["n_instances"] == 300 and result["n_human"] == 75 and result["budget"] == 0.25
    assert len(result["assignments"]) == 300
    assert {a["route"] for a in result["assignments"]} == {"human", "ai"}
    assert result["ppm_version"] == result["training"]["ppm_version"]
    assert result["training"]["n_runs"] == 10 and result["training"]["n_eval"] == 60
    assert 0.0 < result["predicted_score"] < 1.0
    assert "routed to human  75 (25.0%)" in first.stdout
    curve = json.loads((tmp_path / "budget_curve.json").read_text())
    assert [p["n_paid"] for p in curve["budget_curve"]] == [30 * k for k in range(11)]
    assert (tmp_path / "budget_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    second = run_cli(args, cli_env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(out.read_text())
    assert '"pending": 0' in second.stderr  # every run already recorded: nothing retrained
    assert again["training"]["experiment"] == result["training"]["experiment"]
    assert again["training"]["all_human_accuracy"] == result["training"]["all_human_accuracy"]

    status = run_cli(["status"], cli_env)
    assert status.stdout.split() == ["ppm", "STOPPED", "tagger", "STOPPED", "router", "STOPPED"]


def test_route_refuses_a_file_with_bad_rows_with_line_numbers(tmp_path, cli_env):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: yo", '
                   '"rejected": "\\n\\nHuman: hi\\n\\nAssistant: no"}\n'
                   '{"chosen": 3, "rejected": "x"}\n')
    result = run_cli(["train", str(bad)], cli_env)
    assert result.returncode == 2
    assert "row 2: field 'chosen'" in result.stderr


def test_inspect_summarises_the_bundled_file(cli_env):
    result = run_cli(["inspect", str(HH_DATA)], cli_env)
    assert result.returncode == 0, result.stderr
    assert "format      hh-rlhf" in result.stdout
    assert "instances   2312" in result.stdout and "label human A: 1163  B: 1149  tie: 0" in result.stdout
