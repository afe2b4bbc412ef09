"""Scale benchmark: a million knapsack candidates, Route over a million pairs, tagging rate.

    python -m bench.scale                       # everything (about 15 min on 2 cores)
    python -m bench.scale --only candidates     # one part: candidates, route, tagging

Writes out/bench/scale.json (merged into what an earlier run of the other parts wrote), prints
a table, draws out/bench/scale-route.png (Route time and memory against dataset size) and logs
progress to stderr. Everything is seeded.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench import routing as reference
from hyper.method.candidates import (
    count_vectors,
    knapsack_mixes,
    knapsack_neighbourhoods,
    neighbourhood_counts,
    neighbourhood_hashes,
    neighbourhood_mask,
    per_thousand,
)
from hyper_ppm.fitting import fit_ppm
from hyper_router.selection import RoutingProblem, best_in_neighbourhoods

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


# ---------------------------------------------------------------- Route over a million pairs
# Tagging a million distinct pairs would take hours here, so the cache is filled as a shared
# cache would be after a tagging Job: the tagger computes the values of BASE_PAIRS bundled pairs,
# and each variant (the same pair, its prompt suffixed) gets its base pair's values under its
# own content key. What Route then does is all measured: read and parse the file, hash every
# pair, ask the tagger which keys it lacks, have it bin the whole dataset by key, route,
# persist the assignments.

BASE_PAIRS = 2_000
# The Route before 2026-12-07's changes (chunks warmed while the next is read, the collector
# paused while reading, Arrow reading ahead, the feature store's matrix, columns gathered whole).
BASELINE = "d7888bd"
FIRST_CALLS = 3  # services started afresh this many times per side and size: the median is reported
ROUTE_SIZES = (10_000, 100_000, 1_000_000)
REPEATS = 5


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def _fill_cache(settings, base: list, sizes: tuple[int, ...]) -> None:
    """Tags the base pairs for real, then stores their values under every variant's key."""
    from hyper.api.clients import TaggerClient
    from hyper.core.vector_store import VectorStore
    from hyper.infra.local_processes import LocalProcesses

    processes = LocalProcesses(settings)
    processes.up()
    try:
        progress(f"tagging {len(base):,} bundled pairs for real")
        with reference.serving.channel(settings.address("tagger"), settings) as channel:
            TaggerClient(channel).tag(base)
    finally:
        processes.down()
    [directory] = (settings.cache_dir / "features").iterdir()
    store = VectorStore(directory, np.load(next(directory.glob("*.npz")))["vectors"].shape[1])
    values, missing = store.get_many([i.content_key() for i in base])
    assert not missing
    variants = reference.hh_variants(max(sizes))  # cycles through HH's pairs; base = the first
    keys = [i.content_key() for i in variants]
    store.put_many(keys, values[np.arange(len(variants)) % len(base)])
    store.flush()
    progress(f"{len(keys):,} variants cached")


def _first_call_phases(settings) -> dict[str, float]:
    """The phases of the router's first Route of the file just routed, from its log line."""
    from hyper.infra.local_processes import LocalProcesses

    log_file = Path(LocalProcesses(settings).status_entry("router")["log"])
    records = [json.loads(line) for line in log_file.read_text().splitlines() if '"route phases"' in line]
    return records[-1 - REPEATS]["seconds"]


def _read_side_by_side(path: Path) -> dict:
    """Reading, validating and hashing the file in this process, today's reader against the row
    reader it replaces for plain files (still the reader of every other file)."""
    from hyper.data import dataset_files, ingest

    def rows() -> int:
        return len(ingest.parse_records(dataset_files._records(path), on_chunk=lambda chunk: None).instances)

    def columns() -> int:
        return len(dataset_files.read_dataset(path, on_chunk=lambda chunk: None).instances)

    timings = {}
    for name, read in (("row_reader_s", rows), ("reader_s", columns)):
        began = time.perf_counter()
        read()
        timings[name] = time.perf_counter() - began
    progress(f"read {path.name}: row reader {timings['row_reader_s']:.1f} s, columnar {timings['reader_s']:.1f} s")
    return timings | {"speedup": timings["row_reader_s"] / timings["reader_s"]}


def _route_file(settings, path: Path, n: int) -> dict:
    from hyper.api.clients import RouterClient
    from hyper.infra.local_processes import LocalProcesses

    request = reference.route_request(path, "topk", 0.25)
    with reference.serving.channel(settings.address("router"), settings) as channel:
        router = RouterClient(channel)
        began = time.perf_counter()
        first = router.route(request)
        first_s = time.perf_counter() - began
        assert first.n_instances == n, (first.n_instances, n)
        repeat_s = reference.median_seconds(lambda: router.route(request), REPEATS)
    rss = _peak_rss_mb(LocalProcesses(settings).status_entry("router")["pid"])
    phases = _first_call_phases(settings)
    progress(f"Route over {n:,} pairs: first {first_s:.1f} s ({phases}), repeated {repeat_s:.2f} s, "
             f"router peak RSS {rss:,.0f} MB")
    return {"first_s": first_s, "first_phases_s": phases, "repeat_s": repeat_s, "rss_mb": rss, "n_human": first.n_human,
            "page_assignments": len(first.assignments), "file_mb": path.stat().st_size / 2**20}


def _median_run(runs: list[dict]) -> dict:
    """The run of the median first call, with every first call's time and the highest peak RSS."""
    median = sorted(runs, key=lambda run: run["first_s"])[len(runs) // 2]
    return median | {"first_calls_s": [run["first_s"] for run in runs], "rss_mb": max(run["rss_mb"] for run in runs)}


def _route_with(settings, path: Path, n: int, pythonpath: str) -> dict:
    """The file routed by fresh services running the code on `pythonpath` ("": today's)."""
    import os

    from hyper.infra.local_processes import LocalProcesses

    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = pythonpath  # the services inherit it
    processes = LocalProcesses(settings)
    try:
        processes.up()
        return _route_file(settings, path, n)
    finally:
        processes.down()
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _in_page_cache(path: Path) -> None:
    """The file read once, so that neither side pays for the disk."""
    with open(path, "rb") as file:
        while file.read(2**24):
            pass


def route(sizes: tuple[int, ...] = ROUTE_SIZES, base_pairs: int = BASE_PAIRS, baseline: str = BASELINE,
          first_calls: int = FIRST_CALLS) -> dict:
    """Each size routed by `baseline`'s services and by today's, alternating on the same file and
    cache, `first_calls` times each (`baseline` "": today's only)."""
    import tempfile

    from bench.from_git import services_at_commit
    from hyper_ppm.store import ModelRegistry

    bits, problem, _, _ = _synthetic_problem(2_000, 0.25, 0)
    with tempfile.TemporaryDirectory(prefix="hyper-scale-") as home:
        with reference.local_services(Path(home)) as settings:  # only for its settings: stopped at once
            pass
        base = reference.hh_variants(base_pairs)
        _fill_cache(settings, base, sizes)
        ModelRegistry(settings.ppm_dir).save(reference.PPM_NAME, problem.model.to_json())
        before_code = services_at_commit(baseline, Path(home) / "before") if baseline else None
        results = {}
        for n in sorted(sizes):
            path = reference.write_plain(reference.hh_variants(n), Path(home) / f"pairs-{n}.jsonl")
            _in_page_cache(path)
            sides = {"now": ""}
            if before_code:
                sides = {"before": before_code, "now": ""}
            runs: dict[str, list[dict]] = {side: [] for side in sides}
            for _ in range(first_calls):  # alternating, so that a slow spell of the machine hits both
                for side, code in sides.items():
                    runs[side].append(_route_with(settings, path, n, code))
            now, *before = (_median_run(runs[side]) for side in ("now", "before") if side in runs)
            results[str(n)] = now | ({"before": before[0] | {"commit": baseline}} if before else {}) | {
                "read": _read_side_by_side(path)}
    return results


def plot_route(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(n) for n in results)
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("first_s", "first call (read, hash, look up, route)"), ("repeat_s", "repeated call")):
        time_axis.loglog(sizes, [results[str(n)][key] for n in sizes], "o-", label=label)
    if all("before" in results[str(n)] for n in sizes):
        commit = results[str(sizes[0])]["before"]["commit"]
        time_axis.loglog(sizes, [results[str(n)]["before"]["first_s"] for n in sizes], "s:",
                         label=f"first call before ({commit})")
    time_axis.loglog(sizes, [results[str(n)]["read"]["row_reader_s"] for n in sizes], "x--",
                     label="reading in one process: row reader")
    time_axis.loglog(sizes, [results[str(n)]["read"]["reader_s"] for n in sizes], "x--",
                     label="reading in one process: today's reader")
    time_axis.axhline(15, color="grey", ls=":", label="targets at 1M: 15 s, 1 s")
    time_axis.axhline(1, color="grey", ls=":")
    time_axis.set(xlabel="pairs in the file", ylabel="seconds", title="Route time")
    time_axis.legend(fontsize=8)
    memory_axis.semilogx(sizes, [results[str(n)]["rss_mb"] for n in sizes], "o-", label="now")
    if all("before" in results[str(n)] for n in sizes):
        memory_axis.semilogx(sizes, [results[str(n)]["before"]["rss_mb"] for n in sizes], "s:", label="before")
    memory_axis.axhline(2048, color="grey", ls=":", label="target: 2 GB")
    memory_axis.set(xlabel="pairs in the file", ylabel="router peak RSS (MB)", title="Router memory")
    memory_axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png, dpi=120)


# ---------------------------------------------------------------- tagging


def tagging(rows: int = 512) -> dict:
    """The CPU tagger's rate from a cold cache, on the path Route and `hyper tag` take
    (bench.tagging's "after"; before/after comparisons: python -m bench.tagging)."""
    import os
    import tempfile

    from bench import tagging as tagging_bench
    from hyper.core.settings import Settings
    from hyper.data import dataset_files
    from hyper_tagger import textual

    by_dataset, total_rows, total_seconds = {}, 0, 0.0
    with tempfile.TemporaryDirectory() as scratch:
        tagger = tagging_bench.Variant(textual, Settings().embedding_runtime, Path(scratch))
        tagger.export()
        for name, path in tagging_bench.DATASETS.items():
            instances = dataset_files.read_dataset(path).instances[:rows]
            seconds, _, _ = tagger.tag(instances)
            by_dataset[name] = {"rows": len(instances), "seconds": seconds,
                                "pairs_per_second": len(instances) / seconds, "load_average": os.getloadavg()[0]}
            progress(f"tagged {len(instances)} {name} pairs from a cold cache: {len(instances) / seconds:.1f} pairs/s")
            total_rows, total_seconds = total_rows + len(instances), total_seconds + seconds
    return {"pairs_per_second": total_rows / total_seconds, "cores": len(os.sched_getaffinity(0)),
            "by_dataset": by_dataset}


# ---------------------------------------------------------------- the job


def _before_now(was: dict | None, now: float, key: str, unit: str = "s", digits: int = 1) -> str:
    """The "before -> now" of one figure (a phase of the first call, or a whole-run figure)."""
    if not was:
        return f"{now:.{digits}f} {unit}"
    before = was[key] if key in was else was["first_phases_s"][key]
    return f"{before:.{digits}f} -> {now:.{digits}f} {unit}"


def table(result: dict) -> str:
    lines = [f"HyPER scale benchmark on {result['machine']['nproc']} cores ({result['machine']['cpu_model']})"]
    if c := result.get("candidates"):
        lines += ["", f"candidates: {c['n_distinct']:,} distinct knapsack candidates on {c['n_instances']:,} "
                      f"instances, generated and scored in {c['seconds']:.1f} s ({c['per_second']:,.0f}/s)",
                  f"  scoring {c['scoring_per_second']:,.0f}/s (running counts) vs dense product "
                  f"{c['dense_gemm_scoring_per_second']:,.0f}/s vs pandas loop {c['baseline_per_second']:,.1f}/s: "
                  f"x{c['speedup_vs_baseline']:,.0f} (x{c['speedup_vs_baseline_with_generation']:,.0f} "
                  "with generation)"]
    if tagged := result.get("tagging"):
        lines += ["", f"tagging (CPU backend, cold cache): {tagged['pairs_per_second']:.1f} pairs/s on "
                      f"{tagged['cores']} cores ("
                  + ", ".join(f"{name} {r['pairs_per_second']:.1f}" for name, r in tagged["by_dataset"].items()) + ")"]
    if routes := result.get("route"):
        lines += ["", "Route (topk, 25%, features cached; router peak RSS); the first call's phases in the router,",
                  "before (the baseline commit's services) -> now, on the same file one after the other;",
                  "reading the file in one process with the row reader and with today's reader"]
        for n, r in sorted(routes.items(), key=lambda item: int(item[0])):
            was = r.get("before")
            pair = functools.partial(_before_now, was)
            phase = r["first_phases_s"]
            lines += [f"  {int(n):,} pairs" + (f" (before: {was['commit']})" if was else ""),
                      f"    first call {pair(r['first_s'], 'first_s')}"
                      + (f" (x{was['first_s'] / r['first_s']:.2f})" if was else "")
                      + f", median of {len(r['first_calls_s'])}"
                      + "; phases: " + ", ".join(f"{name} {pair(phase[name], name)}"
                                                 for name in ("read", "features", "routing", "save")),
                      f"    repeated {pair(r['repeat_s'], 'repeat_s', digits=2)}; router peak RSS "
                      f"{pair(r['rss_mb'], 'rss_mb', 'MB', 0)}; reading in one process: row reader "
                      f"{r['read']['row_reader_s']:.1f} s, today's {r['read']['reader_s']:.1f} s "
                      f"(x{r['read']['speedup']:.1f})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--route-sizes", type=int, nargs="+", default=list(ROUTE_SIZES))
    parser.add_argument("--route-base-pairs", type=int, default=BASE_PAIRS, help="pairs tagged for real")
    parser.add_argument("--baseline", default=BASELINE, help='the commit Route is compared with ("": none)')
    parser.add_argument("--first-calls", type=int, default=FIRST_CALLS, help="first calls per side and size")
    parser.add_argument("--candidates", type=int, default=1_000_000, help="distinct candidates to generate")
    parser.add_argument("--tagging-rows", type=int, default=512, help="pairs of each dataset to tag")
    args = parser.parse_args(argv)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["machine"] = reference.machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)  # the plot is drawn before the results are written
    if "route" in args.only:
        result["route"] = route(tuple(args.route_sizes), args.route_base_pairs, args.baseline, args.first_calls)
        plot_route(result["route"], args.out.with_name("scale-route.png"))
    if "tagging" in args.only:
        result["tagging"] = tagging(args.tagging_rows)
    if "candidates" in args.only:
        result["candidates"] = candidates(n_target=args.candidates)
        result["speedup_vs_baseline"] = result["candidates"]["speedup_vs_baseline"]
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
