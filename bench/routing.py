"""Routing benchmark: the engine's candidate scoring against the paper's per-candidate pandas
loop, Route latency over gRPC with cached features, and `optimize` against best-of-500.

    python -m bench.routing                      # the full run, a few minutes on 2 cores
    python -m bench.routing --n-instances 2000 --engine-sizes 1000 10000 --route-calls 20

Everything is seeded. Timings are medians where a measurement is repeated. Writes
out/bench/routing.json (with the config it ran with), prints a table, and logs progress to
stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import PolynomialFeatures

from hyper.api import serving
from hyper.api.clients import RouterClient
from hyper.api.messages import RouteOptions
from hyper.core.catalogue import (
    DESCRIPTIVE_VALUES,
    FEATURE_INDEX,
    FEATURE_NAMES,
    N_BINS,
    OPEN_SET_DIMENSIONS,
    PRESENT,
    SUBJECTS,
    TEXTUAL_DIMENSIONS,
    bin_label,
)
from hyper.core.schema import Instance, stable_id
from hyper.core.settings import Settings
from hyper.data import dataset_files, ingest
from hyper.infra.local_processes import LocalProcesses
from hyper.method.candidates import (
    active_columns,
    count_vectors,
    first_in_order,
    knapsack_mixes,
    knapsack_orders,
    per_thousand,
)
from hyper.method.performance_models import PerformanceModel
from hyper.v1 import common_pb2, router_pb2
from hyper_ppm.fitting import fit_ppm
from hyper_ppm.store import ModelRegistry
from hyper_router.route_plan import solve
from hyper_router.selection import RoutingProblem

REPO = Path(__file__).resolve().parents[1]
HH_DATA = REPO / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
PPM_NAME = "bench-quadratic"
TEXT_COLUMNS = ("prompt", "response_a", "response_b")
COMPARED_STRATEGIES = ("optimize", "simulated", "topk", "random")
_STARTED = time.perf_counter()


@dataclass(frozen=True)
class BenchConfig:
    seed: int = 0
    n_instances: int = 10_000
    n_runs: int = 200  # synthetic proxy-RM runs the PPM is fitted on
    budget: float = 0.25  # human fraction for the engine and Route measurements
    engine_sizes: tuple[int, ...] = (10**3, 10**4, 10**5, 10**6)
    # Candidates per scoring block ((chunk, n) bools: 100 MB at 10k x 10k). It is also the size
    # of the pool of distinct knapsack candidates: generating one costs about a millisecond (a
    # gather over every row's features, then a partition of n keys), so 10^6 distinct ones would
    # take far longer than the rest of the run; larger runs score the pool's block again, which
    # costs the same as scoring a new one (a dense product, blind to the values).
    scoring_chunk: int = 10_000
    # Bounds knapsack_mixes' (chunk, n, active) gather; smaller blocks also run faster here.
    generation_chunk: int = 500
    scoring_repeats: int = 5  # for every size but the largest, which is timed once
    baseline_candidates: int = 40
    route_calls: int = 200
    route_strategies: tuple[str, ...] = ("topk", "optimize")
    comparison_budgets: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75)
    simulated_candidates: int = 500
    out: Path = REPO / "out" / "bench" / "routing.json"


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# ---------------------------------------------------------------- synthetic dataset and runs


def _columns(dimension: str, values) -> np.ndarray:
    return np.array([FEATURE_INDEX[f"{dimension}::{value}"] for value in values])


def _set_one_of(bits: np.ndarray, columns: np.ndarray, rng: np.random.Generator) -> None:
    """Every row gets exactly one of `columns`, at frequencies drawn for this dimension."""
    frequencies = rng.dirichlet(np.full(len(columns), 2.0))
    bits[np.arange(len(bits)), columns[rng.choice(len(columns), len(bits), p=frequencies)]] = 1


def _set_subjects(bits: np.ndarray, rng: np.random.Generator, most: int = 3,
                  n_unused: int = 5) -> None:
    """1 to `most` subjects per row, without replacement, by a Zipf-like popularity in which
    `n_unused` subjects never occur (sampled by Gumbel top-k)."""
    popularity = 1.0 / rng.permutation(np.arange(1.0, len(SUBJECTS) + 1))
    popularity[rng.choice(len(SUBJECTS), n_unused, replace=False)] = 0.0
    with np.errstate(divide="ignore"):
        keys = np.log(popularity) + rng.gumbel(size=(len(bits), len(SUBJECTS)))
    ranks = np.argsort(np.argsort(-keys, axis=1), axis=1)
    taken = ranks < rng.integers(1, most + 1, size=(len(bits), 1))
    bits[:, _columns("subject_of_expertise", SUBJECTS)] = taken


def synthetic_bits(n: int, rng: np.random.Generator, open_set_rate: float = 0.3) -> np.ndarray:
    """(n, catalogue) binary features shaped like the paper's: one bin per textual dimension,
    1-3 subjects, one value per other closed dimension, open-set tags now and then."""
    bits = np.zeros((n, len(FEATURE_NAMES)), dtype=np.uint8)
    for dimension in TEXTUAL_DIMENSIONS:
        _set_one_of(bits, _columns(dimension, map(bin_label, range(N_BINS))), rng)
    _set_subjects(bits, rng)
    for dimension, values in DESCRIPTIVE_VALUES.items():
        if dimension != "subject_of_expertise":
            _set_one_of(bits, _columns(dimension, values), rng)
    for dimension in OPEN_SET_DIMENSIONS:
        bits[:, FEATURE_INDEX[f"{dimension}::{PRESENT}"]] = rng.random(n) < open_set_rate
    return bits


@dataclass
class HiddenTruth:
    """The eval score a proxy RM trained on a mix reaches: quadratic in every feature's share
    of carriers routed to humans, plus noise. Hidden from the PPMs, which see counts."""

    carriers: np.ndarray  # (F,) instances carrying each feature
    linear: np.ndarray  # (F,)
    quadratic: np.ndarray  # (F, F) symmetric, sparse
    base: float = 0.6
    noise: float = 0.005

    def expected(self, counts: np.ndarray) -> np.ndarray:
        shares = np.atleast_2d(counts) / np.maximum(self.carriers, 1.0)
        return self.base + shares @ self.linear + np.einsum("nf,nf->n", shares @ self.quadratic,
                                                            shares)

    def scores(self, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.expected(counts) + rng.normal(0.0, self.noise, len(counts))


def hidden_truth(bits: np.ndarray, rng: np.random.Generator, density: float = 0.05,
                 linear_scale: float = 0.005, pair_scale: float = 0.003) -> HiddenTruth:
    """Effects sized so that a routed mix beats a random one by a few points, as in the paper."""
    n_features = bits.shape[1]
    pairs = rng.normal(0.0, pair_scale, (n_features, n_features))
    pairs *= rng.random((n_features, n_features)) < density
    return HiddenTruth(bits.sum(axis=0).astype(np.float64),
                       rng.normal(0.0, linear_scale, n_features), (pairs + pairs.T) / 2)


def synthetic_runs(bits: np.ndarray, truth: HiddenTruth, n_runs: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Knapsack mixes at random budgets, as the training loop makes them: their count vectors
    and the scores their proxy RMs reach."""
    n = len(bits)
    budgets = rng.integers(int(0.05 * n), int(0.95 * n), n_runs)
    counts = count_vectors(first_in_order(knapsack_orders(bits, n_runs, rng), budgets), bits)
    return counts, truth.scores(counts, rng)


def fit_baseline_ppm(counts: np.ndarray, scores: np.ndarray) -> Pipeline:
    """The quadratic PPM as the paper's scripts build it."""
    return make_pipeline(PolynomialFeatures(2), LinearRegression()).fit(counts, scores)


# ---------------------------------------------------------------- engine throughput


@dataclass
class CandidatePool:
    masks: np.ndarray  # (P, n) bool: distinct knapsack candidates at the budget
    generation_per_second: float  # median over generation blocks


def generate_pool(bits: np.ndarray, size: int, budget_count: int, chunk: int,
                  rng: np.random.Generator) -> CandidatePool:
    active = active_columns(bits)
    blocks, rates = [], []
    for start in range(0, size, chunk):
        n_block = min(chunk, size - start)
        began = time.perf_counter()
        blocks.append(knapsack_mixes(bits, n_block, budget_count, rng, active))
        rates.append(n_block / (time.perf_counter() - began))
        progress(f"generated {start + n_block:,}/{size:,} knapsack candidates")
    return CandidatePool(np.vstack(blocks), float(np.median(rates)))


def score_candidates(masks: np.ndarray, bits: np.ndarray, model: PerformanceModel,
                     n_candidates: int, chunk: int) -> float:
    """Counts + PPM for n_candidates, block by block from the pool; the best prediction."""
    best = -np.inf
    for start in range(0, n_candidates, chunk):
        block = masks[: min(chunk, n_candidates - start)]
        best = max(best, float(model.predict(count_vectors(block, bits)).max()))
    return best


def engine_run(config: BenchConfig, bits: np.ndarray, model: PerformanceModel,
               pool: CandidatePool, n_candidates: int) -> dict:
    repeats = 1 if n_candidates == max(config.engine_sizes) else config.scoring_repeats
    seconds = median_seconds(lambda: score_candidates(pool.masks, bits, model, n_candidates,
                                                      config.scoring_chunk), repeats)
    progress(f"scored {n_candidates:,} candidates: {n_candidates / seconds:,.0f}/s")
    return {"n_candidates": n_candidates, "n_distinct": min(n_candidates, len(pool.masks)),
            "repeats": repeats, "scoring_seconds": seconds,
            "candidates_per_second": n_candidates / seconds,
            "generation_per_second": pool.generation_per_second}


# ---------------------------------------------------------------- the paper's pandas loop


def instance_frame(bits: np.ndarray, instances: list[Instance]) -> pd.DataFrame:
    """The instances as the paper's scripts hold them: id, texts, one bool column per feature."""
    texts = {column: [getattr(i, column) for i in instances] for column in TEXT_COLUMNS}
    frame = pd.DataFrame({"id": [i.id for i in instances], **texts})
    return pd.concat([frame, pd.DataFrame(bits.astype(bool), columns=list(FEATURE_NAMES))],
                     axis=1)


def baseline_count_vector(frame: pd.DataFrame, human_mask: np.ndarray) -> list[int]:
    """Per candidate: build the mix, then filter and count the human-routed carriers of each
    feature."""
    mix = frame.copy()
    mix["human"] = human_mask
    return [len(mix[mix[feature] & mix.human]) for feature in FEATURE_NAMES]


def baseline_seconds(frame: pd.DataFrame, masks: np.ndarray, bits: np.ndarray,
                     pipeline: Pipeline) -> float:
    """Median seconds per candidate (count vector + prediction); its counts must be the
    engine's, or the comparison would be meaningless."""
    seconds, counts = [], []
    for mask in masks:
        began = time.perf_counter()
        counts.append(baseline_count_vector(frame, mask))
        pipeline.predict([counts[-1]])
        seconds.append(time.perf_counter() - began)
    if not np.array_equal(np.array(counts), count_vectors(masks, bits)):
        raise RuntimeError("the pandas baseline's count vectors differ from the engine's")
    return float(np.median(seconds))


# ---------------------------------------------------------------- Route over gRPC


def hh_variants(n: int) -> list[Instance]:
    """n distinct instances from the bundled HH-RLHF pairs. Round r > 0 suffixes the prompt:
    every content key differs, while responses (and their cached embeddings) are shared."""
    base = dataset_files.read_dataset(HH_DATA).instances
    return [_variant(base[k % len(base)], k // len(base)) for k in range(n)]


def _variant(instance: Instance, round_: int) -> Instance:
    if round_ == 0:
        return instance
    prompt = f"{instance.prompt} (variant {round_})"
    return dataclasses.replace(instance, prompt=prompt,
                               id=stable_id(prompt, instance.response_a, instance.response_b))


def write_plain(instances: list[Instance], path: Path) -> Path:
    with open(path, "w") as out:
        out.writelines(json.dumps(ingest.plain_record(i)) + "\n" for i in instances)
    return path


def free_ports(n: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


@contextlib.contextmanager
def local_services(home: Path):
    """tagger, ppm and router as real processes on free loopback ports; always stopped."""
    ports = ("tagger_port", "ppm_port", "router_port", "tagger_metrics_port", "ppm_metrics_port",
             "router_metrics_port")
    settings = Settings(home=home, data_roots=str(home), **dict(zip(ports, free_ports(len(ports)), strict=True)))
    processes = LocalProcesses(settings)
    try:
        processes.up()
        yield settings
    finally:
        processes.down()


def route_request(path: Path, strategy: str, budget: float) -> router_pb2.RouteRequest:
    dataset = common_pb2.Dataset(ref=common_pb2.DatasetRef(path=str(path), format="plain"))
    return router_pb2.RouteRequest(dataset=dataset, budget=router_pb2.Budget(fraction=budget),
                                   strategy=strategy, ppm_model=PPM_NAME)


def route_latency(router: RouterClient, request: router_pb2.RouteRequest, calls: int) -> dict:
    milliseconds = []
    for call in range(1, calls + 1):
        began = time.perf_counter()
        router.route(request)
        milliseconds.append(1000.0 * (time.perf_counter() - began))
        if call % 50 == 0 or call == calls:
            progress(f"Route {request.strategy}: {call}/{calls} calls")
    p50, p99 = np.percentile(milliseconds, [50, 99])
    return {"calls": calls, "p50_ms": float(p50), "p99_ms": float(p99),
            "mean_ms": float(np.mean(milliseconds))}


def route_benchmark(config: BenchConfig, model: PerformanceModel,
                    instances: list[Instance]) -> dict[str, dict]:
    """Route latency per strategy, the dataset given by reference, its features cached."""
    with tempfile.TemporaryDirectory(prefix="hyper-bench-") as home:
        progress("starting tagger, ppm, router")
        with local_services(Path(home)) as settings, \
                serving.channel(settings.address("router"), settings) as channel:
            ModelRegistry(settings.ppm_dir).save(PPM_NAME, model.to_json())
            path = write_plain(instances, Path(home) / "pairs.jsonl")
            router = RouterClient(channel)
            progress(f"warming the tagger cache: one Route over {len(instances):,} instances")
            router.route(route_request(path, "topk", config.budget))
            return {strategy: route_latency(router, route_request(path, strategy, config.budget),
                                            config.route_calls)
                    for strategy in config.route_strategies}


# ---------------------------------------------------------------- optimize vs the paper


def compare_strategies(bits: np.ndarray, model: PerformanceModel, truth: HiddenTruth,
                       fraction: float, config: BenchConfig) -> dict:
    """Each strategy's selection at one budget: its predicted score, its score under the
    hidden truth (does beating the PPM beat the truth?) and its seconds."""
    problem = RoutingProblem.single_source(bits, model, round(fraction * len(bits)))
    predicted, true, seconds = {}, {}, {}
    for strategy in COMPARED_STRATEGIES:
        options = RouteOptions(strategy=strategy, seed=config.seed,
                               n_candidates=config.simulated_candidates)
        began = time.perf_counter()
        chosen = solve(problem, options)
        name = f"simulated_{config.simulated_candidates}" if strategy == "simulated" else strategy
        seconds[name] = time.perf_counter() - began
        predicted[name] = float(problem.score(chosen)[0])
        true[name] = float(truth.expected(problem.counts(chosen))[0])
    progress(f"strategies compared at budget {fraction}")
    return {"budget": fraction, **predicted, "hidden_truth": true, "seconds": seconds}


# ---------------------------------------------------------------- the job


METHOD = {
    "engine": "scoring = count_vectors(masks, bits) then the quadratic PPM's predict, timed apart "
              "from generation (knapsack_mixes at the budget); runs larger than the pool of "
              "distinct candidates (n_distinct) score the pool's block again",
    "baseline": "per candidate: copy the DataFrame, set `human`, len(df[df[f] & df.human]) per "
                "feature, PolynomialFeatures(2) + LinearRegression predict; median per candidate",
    "route": "client-side latency of Route over gRPC on loopback; the dataset is a plain JSONL "
             "file given by reference (read by the router on every call), its features cached "
             "by the tagger after one warm-up Route",
    "optimize_vs_simulated": "predicted score of each strategy's selection on the synthetic "
                             "dataset; hidden_truth: the synthetic ground truth of the same "
                             "selections",
}


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def machine() -> dict:
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu_model(),
            "python": platform.python_version(), "numpy": np.__version__,
            "load_average_at_start": list(os.getloadavg())}


def run(config: BenchConfig) -> dict:
    rng = np.random.default_rng(config.seed)
    host = machine()
    bits = synthetic_bits(config.n_instances, rng)
    rows = per_thousand(bits)  # count vectors per 1,000 pairs: the units every PPM is fitted in
    truth = hidden_truth(rows, rng)
    counts, scores = synthetic_runs(rows, truth, config.n_runs, rng)
    progress(f"fitting the quadratic PPM on {config.n_runs} runs")
    model = fit_ppm(list(FEATURE_NAMES), counts, scores, kind="quadratic", seed=config.seed)
    ppm = {"kind": model.kind, **model.metrics,
           "runs_score_range": [float(scores.min()), float(scores.max())]}
    baseline_ppm = fit_baseline_ppm(counts, scores)
    budget_count = round(config.budget * config.n_instances)
    pool_size = min(max(config.engine_sizes), config.scoring_chunk)
    pool = generate_pool(bits, pool_size, budget_count, config.generation_chunk, rng)
    engine = [engine_run(config, rows, model, pool, n) for n in sorted(config.engine_sizes)]
    instances = hh_variants(config.n_instances)
    progress(f"pandas baseline on {config.baseline_candidates} candidates")
    baseline = 1.0 / baseline_seconds(instance_frame(bits, instances),
                                      pool.masks[: config.baseline_candidates], bits, baseline_ppm)
    comparison = [compare_strategies(bits, model, truth, b, config)
                  for b in config.comparison_budgets]
    routes = route_benchmark(config, model, instances)
    return report(config, host, bits, ppm, engine, baseline, comparison, routes)


def report(config: BenchConfig, host: dict, bits: np.ndarray, ppm: dict, engine: list[dict],
           baseline: float, comparison: list[dict], routes: dict[str, dict]) -> dict:
    largest = engine[-1]["candidates_per_second"]

    def route(strategy: str, key: str) -> float | None:
        return routes.get(strategy, {}).get(key)

    return {
        "n_instances": int(bits.shape[0]), "n_features": int(bits.shape[1]),
        "n_active_features": int((bits.sum(axis=0) > 0).sum()), "budget": config.budget,
        "candidates_per_second": largest,
        "generation_per_second": engine[-1]["generation_per_second"],
        "baseline_candidates_per_second": baseline, "speedup_vs_baseline": largest / baseline,
        "route_p50_ms": route("optimize", "p50_ms"), "route_p99_ms": route("optimize", "p99_ms"),
        "route_topk_p50_ms": route("topk", "p50_ms"), "route_topk_p99_ms": route("topk", "p99_ms"),
        "route": routes, "engine_runs": engine, "optimize_vs_simulated": comparison,
        "ppm": ppm, "machine": host, "method": METHOD, "config": dataclasses.asdict(config),
    }


def _number(value: float, unit: str = "") -> str:
    """One decimal below 100, none above: 39.8, 1,234."""
    return f"{value:,.{1 if value < 100 else 0}f}{unit}"


def _engine_lines(runs: list[dict]) -> list[str]:
    lines = ["engine: counts + quadratic PPM (scoring), knapsack (generation)",
             f"  {'candidates':>12} {'distinct':>10} {'scored/s':>12} {'generated/s':>12}"]
    return lines + [f"  {r['n_candidates']:>12,} {r['n_distinct']:>10,}"
                    f" {r['candidates_per_second']:>12,.0f} {r['generation_per_second']:>12,.0f}"
                    for r in runs]


def _route_lines(routes: dict[str, dict]) -> list[str]:
    lines = ["Route over gRPC (dataset by reference, features cached)",
             f"  {'strategy':>10} {'p50':>10} {'p99':>10}"]
    return lines + [f"  {name:>10} {_number(r['p50_ms'], ' ms'):>10}"
                    f" {_number(r['p99_ms'], ' ms'):>10}" for name, r in routes.items()]


def _score_lines(title: str, rows: list[dict], names: list[str]) -> list[str]:
    lines = [title, f"  {'budget':>6}" + "".join(f" {name:>14}" for name in names)]
    return lines + [f"  {row['budget']:>6.2f}" + "".join(f" {row[name]:>14.4f}" for name in names)
                    for row in rows]


def table(result: dict) -> str:
    comparison = result["optimize_vs_simulated"]
    names = list(comparison[0]["seconds"]) if comparison else []
    truth = [{"budget": row["budget"], **row["hidden_truth"]} for row in comparison]
    blocks = [
        [f"HyPER routing benchmark: {result['n_instances']:,} instances, "
         f"{result['n_features']} features ({result['n_active_features']} active), budget "
         f"{result['budget']:.0%}, {result['machine']['nproc']} cores"],
        _engine_lines(result["engine_runs"]),
        [f"baseline (pandas loop + sklearn): {_number(result['baseline_candidates_per_second'])}"
         f" candidates/s; engine speedup x{result['speedup_vs_baseline']:,.0f}"],
        _route_lines(result["route"]),
        _score_lines("predicted score (quadratic PPM) by strategy", comparison, names),
        _score_lines("hidden-truth score of the same selections", truth, names),
    ]
    return "\n\n".join("\n".join(block) for block in blocks)


def parse_config(argv: list[str] | None = None) -> BenchConfig:
    """Every BenchConfig field is a flag (--n-instances 2000, --engine-sizes 1000 10000)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(BenchConfig):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, tuple):
            parser.add_argument(flag, nargs="+", type=type(field.default[0]), default=field.default)
        else:
            parser.add_argument(flag, type=type(field.default), default=field.default)
    parsed = vars(parser.parse_args(argv))
    return BenchConfig(**{name: tuple(v) if isinstance(v, list) else v
                          for name, v in parsed.items()})


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv)
    began = time.perf_counter()
    result = run(config)
    result["wall_seconds"] = time.perf_counter() - began
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(result, indent=1, default=str))
    print(table(result))
    print(f"\nwall time {result['wall_seconds']:.0f} s; written to {config.out}")


if __name__ == "__main__":
    main()
