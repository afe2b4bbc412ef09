"""`hyper demo` as a user runs it: a real CLI process that starts the services, trains a PPM
on human-labelled data, routes the data over gRPC, writes the result and stops everything."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.local import HH_DATA, REPO, local_settings
from hyper_ppm.store import ModelRegistry

pytestmark = pytest.mark.e2e


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyper.cli", *args], env=env, capture_output=True,
                          text=True, timeout=900)


def head(source: Path, path: Path, lines: int) -> Path:
    with gzip.open(source, "rt") as data, gzip.open(path, "wt") as out:
        out.writelines(itertools.islice(data, lines))
    return path


@pytest.fixture(scope="module")
def small_hh(tmp_path_factory):
    return head(HH_DATA, tmp_path_factory.mktemp("data") / "hh-300.jsonl.gz", 300)


@pytest.fixture(scope="module")
def small_pandalm(tmp_path_factory):
    return head(REPO / "data" / "pandalm-testset.jsonl.gz", tmp_path_factory.mktemp("data") / "pandalm-300.jsonl.gz",
                300)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    settings = local_settings(tmp_path_factory.mktemp("demo-home"))
    return dict(os.environ, **settings.to_env())


ROLES = ["--human-source", "annotator1", "--ai-source", "gpt-3.5-turbo", "--judge", "pandalm-7b"]


@pytest.fixture(scope="module")
def demo(small_pandalm, cli_env, tmp_path_factory):
    """One demo run: its result file, its arguments and what it printed."""
    out = tmp_path_factory.mktemp("demo") / "routing.json"
    args = ["demo", str(small_pandalm), *ROLES, "--budget", "0.25", "--mixes", "40", "--out", str(out)]
    return out, args, run_cli(args, cli_env)


def test_the_demo_routes_a_new_batch_with_real_judge_labels_and_checks_it(demo, cli_env):
    out, args, first = demo
    tmp_path = out.parent
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["n_instances"] == 90 and result["n_human"] == round(0.25 * 90)  # the 30% batch
    assert len(result["assignments"]) == 90 and isinstance(result["warnings"], list)
    lower, upper = result["predicted_lower"], result["predicted_upper"]
    assert lower <= result["predicted_score"] <= upper and result["ppm_target"] == "label_accuracy"
    assert result["optimal_budget_fraction"] is None and result["budget_curve"] == []  # it asked for no curve
    training = result["training"]
    assert training["ai_labels"] == "label_gpt-3.5-turbo from the data" and training["n_runs"] == 40
    assert result["strategy"] == "auto" and result["strategy_chosen"] in ("error_model", "uncertainty")
    assert f'{result["error_model"]}/{result["error_model_version"]}' == training["error_model"]
    registry = ModelRegistry(Path(cli_env["HYPER_HOME"]) / "ppm")
    fitted_on = {registry.load("default", training["ppm_version"])["feature_set_version"],
                 registry.load(result["error_model"], result["error_model_version"])["feature_set_version"]}
    assert len(fitted_on) == 1 and fitted_on.pop().startswith("tagger-v")  # the tagger's, recorded by the runs
    assert not any("fitted on features of version" in warning for warning in result["warnings"])
    assert result["routing_gain"]["ci_low"] <= result["routing_gain"]["mean"] <= result["routing_gain"]["ci_high"]
    check = result["batch_check"]
    assert 0 < check["random"]["mean"] < 1
    assert check["routed_minus_random"]["ci_low"] <= check["routed_minus_random"]["mean"]
    assert "== checked on the batch's reference labels" in first.stdout
    [gains] = [line for line in first.stdout.splitlines() if line.startswith("largest gains")]
    assert gains.count("(+") + gains.count("(-") == 5  # over every page of the route, not the first row
    assert "agreement    gpt-3.5-turbo" in first.stdout and "expected label accuracy" in first.stdout
    for picture in ("diagnose.png", "budget_curve.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = json.loads((tmp_path / "budget_curve.json").read_text())
    assert all(p["lower"] <= p["predicted"] <= p["upper"] for p in curve["budget_curve"])
    assert curve["best_budget_verdict"] in first.stdout

    second = run_cli(args, cli_env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert '"pending": 0' in second.stderr  # every run already recorded: nothing retrained
    assert json.loads(out.read_text())["training"]["experiment"] == training["experiment"]
    status = run_cli(["status"], cli_env)
    assert status.stdout.split() == ["ppm", "STOPPED", "tagger", "STOPPED", "router", "STOPPED"]


def test_the_route_goes_to_annotators_and_back_into_a_final_dataset_and_reward_model(demo, cli_env, tmp_path):
    import datasets

    from hyper.data import dataset_files

    route_file, _, ran = demo
    assert ran.returncode == 0, ran.stderr[-3000:]
    route = json.loads(route_file.read_text())
    batch = {i.id: i for i in dataset_files.read_dataset(route["dataset_ref"]["path"]).instances}
    exported = run_cli(["tasks", "export", str(route_file), "--format", "csv", "--out", str(tmp_path)], cli_env)
    assert exported.returncode == 0, exported.stderr
    with open(tmp_path / "tasks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == route["n_human"] and all(r["prompt"] == batch[r["item_id"]].prompt for r in rows)
    for row in rows:  # what the spreadsheet comes back with: annotator 1's labels
        row.update(annotator="annotator1", label=batch[row["item_id"]].labels["annotator1"])
    with open(tmp_path / "labelled.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    human = tmp_path / "human.jsonl"
    imported = run_cli(["tasks", "import", str(tmp_path / "labelled.csv"), str(route_file), "--out", str(human)],
                       cli_env)
    assert imported.returncode == 0, imported.stderr
    assert f"labelled       {route['n_human']} of {route['n_human']} human-routed items" in imported.stdout

    final = tmp_path / "final"
    args = ["export", route["dataset_ref"]["path"], "--route", str(route_file), "--labels", str(human)]
    done = run_cli([*args, "--format", "hf", "--out", str(final)], cli_env)
    assert done.returncode == 0, done.stderr
    loaded = datasets.load_from_disk(str(final))
    routes = {a["id"]: a["route"] for a in route["assignments"]}
    for row in loaded:
        instance = batch[row["id"]]
        source = "annotator1" if routes[row["id"]] == "human" else "gpt-3.5-turbo"
        assert row["label_source"] == ("human" if source == "annotator1" else source)
        chosen = instance.response_a if instance.labels[source] == "A" else instance.response_b
        assert row["chosen"] == chosen and row["label"] == instance.labels[source]
    assert f"rows           {len(loaded)} of 90 pairs" in done.stdout

    trl = tmp_path / "final.jsonl"
    assert run_cli([*args, "--format", "trl", "--out", str(trl)], cli_env).returncode == 0
    trained = subprocess.run([sys.executable, "-m", "hyper_rm_trainer.job", "final", "--data", str(trl),
                              "--out", str(tmp_path / "rm")], env=cli_env, capture_output=True, text=True,
                             timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((tmp_path / "rm" / "result.json").read_text())["n_pairs"] == len(loaded)


def test_without_ai_labels_the_demo_says_a_judge_is_cross_fitted(small_hh, cli_env, tmp_path):
    out = tmp_path / "routing.json"
    result = run_cli(["demo", str(small_hh), "--budget", "0.25", "--mixes", "10", "--out", str(out)], cli_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not diagnosed: the data has no AI labels" in result.stdout
    assert json.loads(out.read_text())["training"]["ai_labels"].startswith("a judge trained on the human labels")


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
    assert "instances   2312" in result.stdout
    assert "label human               A: 1163   B: 1149   tie: 0" in result.stdout
