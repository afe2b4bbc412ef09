"""Scale benchmark: a million knapsack candidates, Route over a million pairs, tagging rate.

    python -m bench.scale                       # everything (about 15 min on 2 cores)
    python -m bench.scale --only candidates     # one part: candidates, route, tagging

Writes out/bench/scale.json (merged into what an earlier run of the other parts wrote), prints
a table, draws out/bench/scale-route.png (Route time and memory against dataset size) and logs
progress to stderr. Everything is seeded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench import routing as reference
from hyper.candidates import (
    count_vectors,
    knapsack_mixes,
    knapsack_neighbourhoods,
    neighbourhood_counts,
    neighbourhood_hashes,
    neighbourhood_mask,
    per_thousand,
)
from hyper.ppm.fitting import fit_ppm
from hyper.router.selection import RoutingProblem, best_in_neighbourhoods

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "out" / "bench" / "scale.json"
PARTS = ("candidates", "route", "tagging")
_STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- a million candidates


def _synthetic_problem(n: int, budget: float, seed: int):
    """The routing benchmark's synthetic dataset and a quadratic PPM fitted on its runs."""
    rng = np.random.default_rng(seed)
    bits = reference.synthetic_bits(n, rng)
    rows = per_thousand(bits)
    truth = reference.hidden_truth(rows, rng)
    counts, scores = reference.synthetic_runs(rows, truth, 200, rng)
    model = fit_ppm(list(reference.FEATURE_NAMES), counts, scores, kind="quadratic", seed=seed)
    return bits, RoutingProblem.single_source(bits, model, round(budget * n)), \
        reference.fit_baseline_ppm(counts, scores), rng


def _checked(hoods, bits: np.ndarray, problem: RoutingProblem, rng: np.random.Generator, n: int = 20) -> int:
    """Candidates rebuilt as explicit masks: each spends the budget exactly and its counts
    from the running sums equal a dense count of the mask (else the run is void)."""
    for walk, step in zip(rng.integers(0, len(hoods.masks), n), rng.integers(0, hoods.swapped_in.shape[1] + 1, n),
                          strict=True):
        mask = neighbourhood_mask(hoods, int(walk), int(step))
        running = neighbourhood_counts(hoods, bits, slice(int(walk), int(walk) + 1))[0, step]
        if mask.sum() != problem.budget or not np.array_equal(count_vectors(mask, bits)[0], running):
            raise RuntimeError(f"candidate ({walk}, {step}) is not what its running counts say")
    return n


def candidates(n_instances: int = 10_000, n_target: int = 1_000_000, budget: float = 0.25,
               baseline_candidates: int = 40, dense_candidates: int = 2_000, seed: int = 0) -> dict:
    bits, problem, baseline_ppm, rng = _synthetic_problem(n_instances, budget, seed)
    n_walks = int(np.ceil(np.sqrt(n_target) * 1.01))  # 1% spare for repeated masks
    steps = n_target // n_walks
    progress(f"generating {n_walks:,} walks x {steps + 1:,} candidates on {n_instances:,} instances")
    began = time.perf_counter()
    hoods = knapsack_neighbourhoods(bits, n_walks, steps, int(problem.budget), rng)
    generated = time.perf_counter()
    best, where = best_in_neighbourhoods(problem, hoods)
    scored = time.perf_counter()
    hashes = neighbourhood_hashes(hoods, rng.integers(0, 2**63, n_instances, dtype=np.uint64))
    n_distinct = len(np.unique(hashes))
    progress(f"{hoods.n_candidates:,} candidates ({n_distinct:,} distinct) generated in "
             f"{generated - began:.1f} s, scored in {scored - generated:.1f} s; best {best:.4f} at {where}")
    n_checked = _checked(hoods, bits, problem, rng)
    dense = _dense_rate(bits, problem, dense_candidates, rng)
    progress(f"pandas loop on {baseline_candidates} candidates")
    masks = np.array([neighbourhood_mask(hoods, w, s) for w, s in
                      zip(range(baseline_candidates), rng.integers(0, steps + 1, baseline_candidates), strict=True)])
    baseline_per_second = 1.0 / reference.baseline_seconds(
        reference.instance_frame(bits, reference.hh_variants(n_instances)), masks, bits, baseline_ppm)
    scoring_per_second = hoods.n_candidates / (scored - generated)
    return {"n_distinct": n_distinct, "n_candidates": hoods.n_candidates, "n_instances": n_instances,
            "n_walks": len(hoods.masks), "steps_per_walk": steps, "budget": budget,
            "seconds": scored - began, "generation_seconds": generated - began,
            "scoring_seconds": scored - generated, "per_second": hoods.n_candidates / (scored - began),
            "scoring_per_second": scoring_per_second, "best_predicted": best, "checked_candidates": n_checked,
            "dense_gemm_scoring_per_second": dense, "baseline_per_second": baseline_per_second,
            "speedup_vs_baseline": scoring_per_second / baseline_per_second,
            "speedup_vs_baseline_with_generation": hoods.n_candidates / (scored - began) / baseline_per_second}


def _dense_rate(bits: np.ndarray, problem: RoutingProblem, n: int, rng: np.random.Generator) -> float:
    """Scoring rate of independent candidates by the dense count product (the old engine)."""
    masks = knapsack_mixes(bits, n, int(problem.budget), rng)
    began = time.perf_counter()
    problem.score(masks)
    return n / (time.perf_counter() - began)


# ---------------------------------------------------------------- the job


def table(result: dict) -> str:
    lines = [f"HyPER scale benchmark on {result['machine']['nproc']} cores ({result['machine']['cpu_model']})"]
    if c := result.get("candidates"):
        lines += ["", f"candidates: {c['n_distinct']:,} distinct knapsack candidates on {c['n_instances']:,} "
                      f"instances, generated and scored in {c['seconds']:.1f} s ({c['per_second']:,.0f}/s)",
                  f"  scoring {c['scoring_per_second']:,.0f}/s (running counts) vs dense product "
                  f"{c['dense_gemm_scoring_per_second']:,.0f}/s vs pandas loop {c['baseline_per_second']:,.1f}/s: "
                  f"x{c['speedup_vs_baseline']:,.0f} (x{c['speedup_vs_baseline_with_generation']:,.0f} "
                  "with generation)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["machine"] = reference.machine()
    if "candidates" in args.only:
        result["candidates"] = candidates()
        result["speedup_vs_baseline"] = result["candidates"]["speedup_vs_baseline"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
