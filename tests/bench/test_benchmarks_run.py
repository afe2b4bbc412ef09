"""Every benchmark runs end to end in its smallest configuration, as on a fresh clone: from an
empty working folder (no out/, no earlier results), through `python -m bench.<name>`, to its JSON
results. The numbers are not checked here (the benchmarks report them); that each one runs is:
`make bench-scale` once crashed on a fresh clone after its first part, unnoticed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL_FITS = ["--seeds", "1", "--mixes", "30"]

# name -> (arguments, where its results land relative to the working folder, a key they hold)
SMALLEST = {
    "routing": (["--n-instances", "500", "--n-runs", "20", "--engine-sizes", "1000", "--scoring-repeats", "1",
                 "--baseline-candidates", "5", "--route-calls", "3", "--simulated-candidates", "20",
                 "--comparison-budgets", "0.25", "--out", "out/bench/routing.json"], "out/bench/routing.json",
                "route"),
    "quality": (["--datasets", "mt-bench", *SMALL_FITS, "--rm-mixes", "10", "--splits", "2", "--guarantee-splits", "4",
                 "--out", "out/bench/quality.json"], "out/bench/quality.json", "datasets"),
    "quality_features": (["--datasets", "mt-bench", *SMALL_FITS, "--rm-mixes", "10",
                          "--out", "out/bench/quality-features.json"], "out/bench/quality-features.json", "datasets"),
    "transfer": (["--datasets", "mt-bench", "pandalm", *SMALL_FITS, "--out", "out/bench/transfer.json"],
                 "out/bench/transfer.json", "results"),
    "rounds": ([*SMALL_FITS, "--rounds", "2", "--out", "out/bench/rounds.json"], "out/bench/rounds.json",
               "label_accuracy"),
    "tags": (["--out", "out/bench/tags.json"], "out/bench/tags.json", "after"),
    "tagging": (["--repeats", "1", "--pandalm-rows", "40", "--hh-rows", "40", "--out", "out/bench/tagging.json"],
                "out/bench/tagging.json", "results"),
    "scale": (["--route-sizes", "1000", "--route-base-pairs", "100", "--first-calls", "1", "--candidates", "2000",
               "--tagging-rows", "32", "--out", "out/bench/scale.json"], "out/bench/scale.json", "route"),
    "reliability": (["--fuzz-examples", "5", "--big-line-mb", "1", "--contract-examples", "2", "--clients", "2",
                     "--seconds", "2", "--load-pairs", "200", "--overload-calls", "2",
                     # its images section builds and runs every image, which tests/cluster does already
                     "--only", "fuzz", "cli", "faults", "overload", "load", "contract"],
                    "out/bench/reliability.json", "machine"),
    "sources": (["--money", "20"], "out/bench/sources.json", "rows"),
    "loop": (["--pairs", "16", "--concurrency", "1"], "out/bench/loop.json", "loop"),
}


def test_every_benchmark_has_a_smallest_configuration():
    modules = {path.stem for path in (REPO / "bench").glob("*.py")
               if "def main(" in path.read_text() and path.stem != "__init__"}
    assert modules == set(SMALLEST)


@pytest.mark.parametrize("name", list(SMALLEST))
def test_benchmark_runs_from_an_empty_folder(name, tmp_path):
    arguments, results, key = SMALLEST[name]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", f"bench.{name}", *arguments], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=900)
    finally:  # a benchmark that hangs takes the services it started with it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"bench.{name} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    assert key in json.loads((tmp_path / results).read_text())
