"""Tagging throughput on the CPU backend: pairs per second from a cold cache, before and after,
side by side on the same rows, what each stage costs, and how far the sentence model is from
what this machine's cores can compute.

    python -m bench.tagging                      # PandaLM (999 pairs) and 1,024 HH-RLHF pairs
    python -m bench.tagging --repeats 5 --hh-rows 2312

"before" is the tagger of the baseline commit (`--baseline`): its textual code read with
`git show`, the sentence model on PyTorch. "after" is `Tagger.cached_values` as it is now (the
sentence model on ONNX Runtime, NER without the unused shared tok2vec, bit-parallel ROUGE-L),
committing to a fresh disk cache chunk by chunk. "fast" is the same code configured for speed:
the sentence model distilled into static token vectors (HYPER_EMBEDDING_RUNTIME=static) and NER
in two worker processes (HYPER_NER_PROCESSES=2). Its features are another feature set, whose
agreement with "after" is reported. The variants alternate within each repeat,
each with fresh embedding and feature caches, so the load other processes put on the machine
falls on both alike; medians are quoted, with the load average at each measurement. The
binned features of both are compared on the same rows. The machine's limit: the sentence
model's floating-point work (its matrix products, per token it read) against the rate a
float32 matrix product of the same shapes reaches on all cores here.
Writes out/bench/tagging.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from bench.from_git import module_at_commit
from hyper.core.schema import Instance
from hyper.core.settings import Settings
from hyper.data import dataset_files
from hyper.method.embeddings import Runtime, SentenceEmbedder
from hyper_tagger import textual
from hyper_tagger.cache import DiskFeatureCache
from hyper_tagger.descriptive import PrototypeTagger, descriptive_columns, prototype_tagger, request_text
from hyper_tagger.tagging import CACHED_WIDTH, Tagger

REPO = Path(__file__).resolve().parents[1]
BASELINE = "817c434b933290174b92fb9d7bca2892cb4b4789"  # the tagger before ONNX Runtime (2026-12-03)
TEXTUAL_PATH = "services/tagger/hyper_tagger/textual.py"
DATASETS = {"pandalm": REPO / "data" / "pandalm-testset.jsonl.gz",
            "hh-rlhf": REPO / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"}


def timed(function: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    result = function()
    return time.perf_counter() - began, result


class Variant:
    """One tagger (its textual code, its NER pipeline, its sentence-model runtime), with fresh
    (empty) embedding and feature caches on every call."""

    def __init__(self, code: ModuleType, runtime: Runtime, scratch: Path, ner_processes: int = 1):
        self.code, self.runtime, self.scratch = code, runtime, scratch
        self.ner = (code.load_ner(Settings().ner_model) if ner_processes == 1 else
                    code.load_ner(Settings().ner_model, ner_processes))
        self.models = scratch / f"models-{runtime}"

    def fresh(self) -> tuple[SentenceEmbedder, PrototypeTagger, DiskFeatureCache]:
        directory = Path(tempfile.mkdtemp(dir=self.scratch))
        for made_once in ("onnx", "static"):  # the one-time export or distillation is not what is timed
            if (self.models / made_once).exists():
                shutil.copytree(self.models / made_once, directory / made_once)
        embedder = SentenceEmbedder("", directory, runtime=self.runtime)
        return embedder, prototype_tagger(embedder), DiskFeatureCache(directory / "features", CACHED_WIDTH)

    def export(self) -> None:
        SentenceEmbedder("", self.models, runtime=self.runtime)

    def tag(self, instances: list[Instance]) -> tuple[float, np.ndarray, np.ndarray]:
        """Seconds from a cold cache; the raw values; the binned features (binary matrix).
        Today's code runs as the product does (`Tagger.cached_values`: distinct pairs, chunks
        committed to the cache); the baseline's as its tagger computed a chunk."""
        embedder, descriptive, cache = self.fresh()
        if self.code is textual:
            tagger = Tagger(embedder, self.ner, descriptive, cache)
            seconds, (values, misses) = timed(lambda: tagger.cached_values(instances))
            assert misses == len(instances), "the cache was not cold"
        else:
            seconds, values = timed(lambda: np.hstack([
                self.code.raw_textual_values(instances, embedder, self.ner),
                descriptive.tag([i.prompt for i in instances])]))
        return seconds, values, Tagger.binned(values, np.full(len(instances), np.nan))

    def stage_seconds(self, instances: list[Instance]) -> dict[str, float]:
        """What each stage costs on these rows (distinct texts, cold caches)."""
        embedder, descriptive, cache = self.fresh()
        responses_a, responses_b = [i.response_a for i in instances], [i.response_b for i in instances]
        texts = textual.unique(responses_a + responses_b)
        stages: dict[str, float] = {}
        stages["embedding"], (_, tokens) = timed(lambda: embedder.encode_tokens(texts))
        row = {text: k for k, text in enumerate(texts)}
        stages["bertscore"], _ = timed(lambda: self.code.bertscore_f1([tokens[row[a]] for a in responses_a],
                                                                      [tokens[row[b]] for b in responses_b]))
        stages["ner"], _ = timed(lambda: self.code.entity_similarity(self.ner, responses_a, responses_b))
        stages["rouge"], _ = timed(lambda: self.code.rouge_l(responses_a, responses_b))
        stages["token_counts"], _ = timed(lambda: self.code.token_counts(
            embedder.tokenizer, responses_a + responses_b + [i.prompt for i in instances]))
        stages["descriptive"], _ = timed(lambda: descriptive.tag([i.prompt for i in instances]))
        rows = np.zeros((len(instances), CACHED_WIDTH))
        stages["hashing_and_cache"], _ = timed(lambda: cache.put_many([i.content_key() for i in instances], rows))
        return {name: round(seconds, 2) for name, seconds in stages.items()}


def agreement(bits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far two versions' binned features agree: cells, whole rows, and per feature group
    (the textual bins; the descriptive tags)."""
    same = bits == reference
    descriptive = descriptive_columns()
    textual_columns = np.setdiff1d(np.arange(bits.shape[1]), descriptive)
    return {"cells": round(float(same.mean()), 5), "rows": round(float(same.all(axis=1).mean()), 4),
            "textual_rows": round(float(same[:, textual_columns].all(axis=1).mean()), 4),
            "descriptive_rows": round(float(same[:, descriptive].all(axis=1).mean()), 4)}


def raw_differences(values: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The largest absolute difference of each raw textual value between two versions."""
    return {name: float(np.abs(values[:, j] - reference[:, j]).max()) for j, name in enumerate(textual.RAW_DIMENSIONS)}


def model_work(embedder: SentenceEmbedder, texts: list[str]) -> dict[str, float]:
    """Tokens the sentence model reads for these texts (truncated as it truncates) and its
    matrix-product work: per token and layer, the four attention projections and the two
    feed-forward products, plus attention's two products over the text's own tokens."""
    config = embedder.model[0].auto_model.config
    width, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    lengths = np.array([len(ids) for ids in embedder.tokenizer(
        texts, truncation=True, max_length=embedder.model.max_seq_length)["input_ids"]], dtype=np.float64)
    per_token = 2 * layers * (4 * width * width + 2 * width * inner)
    attention = 2 * layers * 2 * width * lengths ** 2
    return {"texts": len(texts), "tokens": int(lengths.sum()), "gflop": float((per_token * lengths.sum()
                                                                             + attention.sum()) / 1e9)}


def matmul_gflops(width: int = 384, inner: int = 1536, tokens: int = 512, seconds: float = 3.0) -> float:
    """The float32 rate NumPy's BLAS reaches on all cores for the model's largest product."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((tokens, width), dtype=np.float32), rng.standard_normal((width, inner), dtype=np.float32)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        a @ b
        count += 1
    return 2 * tokens * width * inner * count / (time.perf_counter() - began) / 1e9


def measure(name: str, instances: list[Instance], variants: dict[str, Variant], repeats: int) -> dict:
    runs: dict[str, list[float]] = {variant: [] for variant in variants}
    loads, values, bits = [], {}, {}
    for repeat in range(repeats):
        for variant, tagger in variants.items():
            seconds, values[variant], bits[variant] = tagger.tag(instances)
            runs[variant].append(seconds)
        loads.append(os.getloadavg())
        print(f"{name} repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in runs.items())
              + f", load {loads[-1][0]:.1f}", file=sys.stderr, flush=True)
    stages = {variant: tagger.stage_seconds(instances) for variant, tagger in variants.items()}
    embedder = variants["after"].fresh()[0]
    responses = textual.unique([t for i in instances for t in (i.response_a, i.response_b)])
    work = {"responses": model_work(embedder, responses),
            "prompts": model_work(embedder, textual.unique([request_text(i.prompt) for i in instances]))}
    return {"dataset": name, "rows": len(instances), "distinct_responses": len(responses),
            **{f"{variant}_seconds": seconds for variant, seconds in runs.items()},
            **{f"{variant}_pairs_per_second": round(len(instances) / statistics.median(seconds), 1)
               for variant, seconds in runs.items()},
            "speedup": round(statistics.median(runs["before"]) / statistics.median(runs["after"]), 2),
            "stage_seconds": stages, "model_work": work,
            "features_after_vs_before": agreement(bits["after"], bits["before"]),
            "features_fast_vs_after": agreement(bits["fast"], bits["after"]),
            "raw_max_difference_after_vs_before": raw_differences(values["after"], values["before"]),
            "load_average": loads, "load_average_after_stages": os.getloadavg()}


def mix(results: list[dict], variants: list[str]) -> dict[str, float]:
    """Pairs per second over both datasets together: all pairs over the sum of median times."""
    pairs = sum(r["rows"] for r in results)
    return {variant: round(pairs / sum(statistics.median(r[f"{variant}_seconds"]) for r in results), 1)
            for variant in variants}


def limits(results: list[dict], gflops: float) -> dict:
    """How close the sentence model's stage runs to the cores' float32 rate."""
    out = {"matmul_gflops_all_cores": round(gflops, 1)}
    for r in results:
        work = r["model_work"]["responses"]
        seconds = r["stage_seconds"]["after"]["embedding"]
        out[r["dataset"]] = {"embedding_seconds": seconds, "at_matmul_rate_seconds": round(work["gflop"] / gflops, 2),
                             "achieved_gflops": round(work["gflop"] / seconds, 1),
                             "microseconds_per_token": round(1e6 * seconds / work["tokens"], 1),
                             "microseconds_per_token_at_matmul_rate": round(1e6 * work["gflop"] / gflops
                                                                            / work["tokens"], 1)}
    return out


def run(pandalm_rows: int, hh_rows: int, repeats: int, baseline: str, scratch: Path) -> dict:
    rows = {"pandalm": dataset_files.read_dataset(DATASETS["pandalm"]).instances[:pandalm_rows],
            "hh-rlhf": dataset_files.read_dataset(DATASETS["hh-rlhf"]).instances[:hh_rows]}
    old = module_at_commit(baseline, TEXTUAL_PATH, "baseline_textual", scratch)
    variants = {"before": Variant(old, "torch", scratch), "after": Variant(textual, "onnxruntime", scratch),
                "fast": Variant(textual, "static", scratch, ner_processes=2)}
    variants["after"].export()
    variants["fast"].export()
    results = [measure(name, instances, variants, repeats) for name, instances in rows.items()]
    import torch

    return {"cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
            "results": results, "mix_pairs_per_second": mix(results, list(variants)),
            "limits": limits(results, matmul_gflops())}


def table(report: dict) -> str:
    lines = [f"{'dataset':8s} {'rows':>5s} {'distinct':>8s} {'before p/s':>10s} {'after p/s':>9s} {'x':>5s}"
             f" {'fast p/s':>8s}"]
    for r in report["results"]:
        lines.append(f"{r['dataset']:8s} {r['rows']:>5d} {r['distinct_responses']:>8d} "
                     f"{r['before_pairs_per_second']:>10.1f} {r['after_pairs_per_second']:>9.1f} {r['speedup']:>5.2f}"
                     f" {r['fast_pairs_per_second']:>8.1f}")
        for variant, stages in r["stage_seconds"].items():
            lines.append(f"  {variant} stages (s): " + ", ".join(f"{k} {v}" for k, v in stages.items()))
        lines.append(f"  features after vs before: {r['features_after_vs_before']}")
        lines.append(f"  features fast vs after (another feature set): {r['features_fast_vs_after']}")
    lines.append("both datasets together (p/s): " + ", ".join(f"{k} {v}" for k, v in
                                                            report["mix_pairs_per_second"].items()))
    limit = report["limits"]
    lines.append(f"float32 matrix products on {report['cores']} cores: {limit['matmul_gflops_all_cores']} GFLOP/s")
    for r in report["results"]:
        x = limit[r["dataset"]]
        lines.append(f"  {r['dataset']}: embedding {x['embedding_seconds']} s ({x['microseconds_per_token']} us/token, "
                     f"{x['achieved_gflops']} GFLOP/s); at that rate {x['at_matmul_rate_seconds']} s "
                     f"({x['microseconds_per_token_at_matmul_rate']} us/token)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pandalm-rows", type=int, default=999)
    parser.add_argument("--hh-rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "tagging.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report = {"config": {**vars(args), "out": str(args.out)},
                  **run(args.pandalm_rows, args.hh_rows, args.repeats, args.baseline, Path(scratch))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
