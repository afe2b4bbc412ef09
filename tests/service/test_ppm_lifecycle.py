"""`hyper ppm list|show|fit|export|import|promote` against the session's real ppm process: a
PPM fitted from two experiments' runs, moved to another name as a file, promoted, and a
tampered file refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest

from hyper.api import proto_convert
from hyper.api.clients import PPMClient
from hyper.core.features import FeatureMatrix
from hyper.v1 import ppm_pb2

pytestmark = pytest.mark.service

FEATURES = ["rouge::0.00-0.33", "safety_concern::moderate", "bertscore::0.33-0.67"]


def record(ppm: PPMClient, experiment: str, n: int, seed: int, version: str = "tags-v1") -> None:
    rng = np.random.default_rng(seed)
    for k in range(n):
        counts = rng.integers(0, 200, size=3).astype(float)
        score = 0.6 + 0.001 * counts[1] + 0.0002 * counts[2] + rng.normal(0, 0.005)
        ppm.record_run(ppm_pb2.Run(run_id=f"{experiment}-{k}", experiment=experiment, state="succeeded",
                                   eval_score=score, score="label_accuracy", n_total=1000,
                                   feature_set_version=version,
                                   count_vector=proto_convert.count_vectors_to_proto(FEATURES, counts)))


def hyper(services, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyper.cli", "ppm", *args],
                          env={**os.environ, **services.to_env()},
                          capture_output=True, text=True, timeout=120)


def test_fit_list_show_export_import_and_promote(services, channels, tmp_path):
    ppm = PPMClient(channels["ppm"])
    record(ppm, "life-a", 30, 0)
    record(ppm, "life-b", 30, 1)
    fitted = hyper(services, "fit", "--model", "life", "--experiment", "life-a", "--experiment", "life-b")
    assert fitted.returncode == 0, fitted.stderr
    assert "on 60 runs of life-a, life-b" in fitted.stdout
    second = hyper(services, "fit", "--model", "life", "--experiment", "life-a", "--kind", "quadratic")
    assert second.returncode == 0, second.stderr
    [latest, first] = [v for v in ppm.list_models() if v.model == "life"]
    assert latest.n_runs == 30 and first.n_runs == 60 and list(first.experiments) == ["life-a", "life-b"]
    assert ppm.current_version("life") == latest.version  # nothing promoted: the latest

    listed = hyper(services, "list")
    assert listed.returncode == 0 and first.version in listed.stdout and "life-a,life-b" in listed.stdout
    shown = hyper(services, "show", "life", "--version", first.version, "--top", "2")
    assert shown.returncode == 0, shown.stderr
    assert "features       tags-v1\n" in shown.stdout  # the tagger's version its runs were counted on
    gains = shown.stdout.split("largest gains")[1].split("\n")[1:3]
    assert "safety_concern::moderate" in gains[0]  # the feature the runs' scores rise with most

    promoted = hyper(services, "promote", "life", first.version)
    assert promoted.returncode == 0 and f"Route uses {first.version} (promoted)" in promoted.stdout
    assert ppm.current_version("life") == first.version
    assert "* life " in hyper(services, "list").stdout

    exported = tmp_path / "life.json"
    assert hyper(services, "export", "life", "--out", str(exported)).returncode == 0
    imported = hyper(services, "import", str(exported), "--model", "moved")
    assert imported.returncode == 0, imported.stderr
    assert f"imported       life/{first.version} as moved v1-" in imported.stdout
    moved = ppm.artifact("moved")
    original = ppm.artifact("life", first.version)
    assert moved["form"] == original["form"] and moved["imported_from"] == f"life/{first.version}"

    tampered = json.loads(exported.read_text())
    tampered["artifact"]["form"]["intercept"] = 0.99
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    refused = hyper(services, "import", str(tmp_path / "tampered.json"), "--model", "moved")
    assert refused.returncode == 2 and "json: the artifact does not match its sha256" in refused.stderr
    assert len([v for v in ppm.list_models() if v.model == "moved"]) == 1  # nothing stored

    unpinned = hyper(services, "promote", "life", "--unpin")
    assert unpinned.returncode == 0 and ppm.current_version("life") == latest.version
    missing = hyper(services, "promote", "life", "v99-deadbeef")
    assert missing.returncode == 2 and "has no version 'v99-deadbeef'" in missing.stderr


def test_runs_counted_on_different_feature_set_versions_make_no_ppm(services, channels):
    ppm = PPMClient(channels["ppm"])
    record(ppm, "tags-old", 20, 2, version="tags-v1")
    record(ppm, "tags-new", 20, 3, version="tags-v2")
    refused = hyper(services, "fit", "--model", "mixed", "--experiment", "tags-old", "--experiment", "tags-new")
    assert refused.returncode == 2
    assert "experiment: runs were counted on different feature-set versions: ['tags-v1', 'tags-v2']" in refused.stderr
    assert [v for v in ppm.list_models() if v.model == "mixed"] == []


def error_model_request(n: int, seed: int, **update) -> ppm_pb2.FitErrorModelRequest:
    """A labelled history whose judge errs more where the second feature is set."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (n, len(FEATURES))).astype(np.uint8)
    wrong = rng.random(n) < np.where(bits[:, 1] == 1, 0.5, 0.1)
    matrix = FeatureMatrix([f"p{k}" for k in range(n)], FEATURES, bits, "test-v1")
    fields = {"model": "life.errors", "features": proto_convert.feature_matrix_to_proto(matrix),
              "judge_confidence": rng.random(n).tolist(), "judge_correct": (~wrong).tolist(),
              "human_correct": [True] * n, "scored": [True] * n, "forced": [False] * n, "human_is_reference": True,
              "ai_source": "judge", "seed": seed}
    return ppm_pb2.FitErrorModelRequest(**(fields | update))


def test_an_error_model_is_fitted_listed_shown_and_refused_with_the_field_at_fault(services, channels):
    ppm = PPMClient(channels["ppm"])
    info = ppm.fit_error_model(error_model_request(300, 0))
    assert info.kind == "error_model" and info.target == "label_accuracy" and info.error_skill.n_pairs == 300
    assert 0.5 < info.error_skill.auc.mean <= 1.0
    listed = hyper(services, "list")
    assert listed.returncode == 0 and "life.errors" in listed.stdout and "AUC" in listed.stdout
    shown = hyper(services, "show", "life.errors")
    assert shown.returncode == 0, shown.stderr
    assert "error model of label_judge's errors" in shown.stdout and "error_model" in shown.stdout.split(
        "gain vs random")[1]
    with pytest.raises(grpc.RpcError) as caught:
        ppm.fit_error_model(error_model_request(50, 1, judge_correct=[True] * 49))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("judge_correct: has 49 values for 50 pairs")
