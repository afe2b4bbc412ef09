"""Tagging throughput on the CPU backend: pairs per second from a cold cache, before and after,
side by side on the same rows, and what each stage costs.

    python -m bench.tagging                      # PandaLM (999 pairs) and 1,024 HH-RLHF pairs
    python -m bench.tagging --repeats 5 --hh-rows 2312

"before" is the textual code of the baseline commit (`--baseline`, read with `git show`): every
response through the models, all misses in one batch. "after" is `Tagger.cached_values` as it is
now (distinct texts only, committed to a fresh disk cache chunk by chunk). "after_bf16" is an
experiment, not a setting: the same with the sentence model's weights in bfloat16 (Sapphire
Rapids runs its matmuls on AMX); it changes the values, so its binned features are compared with
the float32 ones on the same rows. The variants alternate within each repeat, each with fresh
embedding and feature caches, so the load that other processes put on the machine falls on all
alike; medians are quoted, with the load average (`os.getloadavg()`) at each measurement.
Writes out/bench/tagging.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from bench.from_git import module_at_commit
from hyper.core.schema import Instance
from hyper.core.settings import Settings
from hyper.data import dataset_files
from hyper.method.embeddings import SentenceEmbedder
from hyper_tagger import textual
from hyper_tagger.cache import DiskFeatureCache
from hyper_tagger.descriptive import PrototypeTagger, descriptive_columns
from hyper_tagger.tagging import CACHED_WIDTH, Tagger

REPO = Path(__file__).resolve().parents[1]
BASELINE = "7062089fcadb88cf68c8060f6b57a6b5e403fb34"  # the tagger as it was before this benchmark
BASELINE_IMPORTS = {"hyper.catalogue": "hyper.core.catalogue", "hyper.embeddings": "hyper.method.embeddings",
                    "hyper.schema": "hyper.core.schema"}
DATASETS = {"pandalm": REPO / "data" / "pandalm-testset.jsonl.gz",
            "hh-rlhf": REPO / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"}


def timed(function: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    result = function()
    return time.perf_counter() - began, result


class ColdModels:
    """The models loaded once; fresh (empty) embedding and feature caches on every call."""

    def __init__(self, ner_model: str, scratch: Path):
        self.ner = textual.load_ner(ner_model)
        self.scratch = scratch

    def fresh(self, bfloat16: bool = False) -> tuple[SentenceEmbedder, PrototypeTagger, DiskFeatureCache]:
        directory = Path(tempfile.mkdtemp(dir=self.scratch))
        embedder = SentenceEmbedder("", directory)
        if bfloat16:
            embedder.model.to(torch.bfloat16)
        return embedder, PrototypeTagger(embedder), DiskFeatureCache(directory / "features", CACHED_WIDTH)


def run_before(models: ColdModels, baseline: ModuleType, instances: list[Instance]) -> float:
    embedder, descriptive, _ = models.fresh()
    seconds, _ = timed(lambda: (baseline.raw_textual_values(instances, embedder, models.ner),
                                descriptive.tag([i.prompt for i in instances])))
    return seconds


def run_after(models: ColdModels, instances: list[Instance], bfloat16: bool = False) -> tuple[float, np.ndarray]:
    """Seconds from a cold cache, and the binned features (binary matrix) of these rows."""
    embedder, descriptive, cache = models.fresh(bfloat16)
    tagger = Tagger(embedder, models.ner, descriptive, cache)
    seconds, (values, misses) = timed(lambda: tagger.cached_values(instances))
    assert misses == len(instances), "the cache was not cold"
    return seconds, tagger.binned(values, np.full(len(instances), np.nan))


def agreement(bits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far the bfloat16 features agree with the float32 ones: cells, whole rows, and per
    feature group (the textual bins; the descriptive tags, which use the same embeddings)."""
    same = bits == reference
    descriptive = descriptive_columns()
    textual_columns = np.setdiff1d(np.arange(bits.shape[1]), descriptive)
    return {"cells": round(float(same.mean()), 5), "rows": round(float(same.all(axis=1).mean()), 4),
            "textual_rows": round(float(same[:, textual_columns].all(axis=1).mean()), 4),
            "descriptive_rows": round(float(same[:, descriptive].all(axis=1).mean()), 4)}


def stage_seconds(models: ColdModels, instances: list[Instance]) -> dict[str, float]:
    """What each stage of the current path costs on these rows (distinct texts, cold caches)."""
    embedder, descriptive, cache = models.fresh()
    responses_a, responses_b = [i.response_a for i in instances], [i.response_b for i in instances]
    texts = textual.unique(responses_a + responses_b)
    stages: dict[str, float] = {}
    stages["embedding"], (_, tokens) = timed(lambda: embedder.encode_tokens(texts))
    row = {text: k for k, text in enumerate(texts)}
    stages["bertscore"], _ = timed(lambda: textual.bertscore_f1([tokens[row[a]] for a in responses_a],
                                                                [tokens[row[b]] for b in responses_b]))
    stages["ner"], _ = timed(lambda: textual.entity_similarity(models.ner, responses_a, responses_b))
    stages["rouge"], _ = timed(lambda: textual.rouge_l(responses_a, responses_b))
    stages["token_counts"], _ = timed(lambda: textual.token_counts(embedder.tokenizer, responses_a + responses_b
                                                                   + [i.prompt for i in instances]))
    stages["descriptive"], _ = timed(lambda: descriptive.tag([i.prompt for i in instances]))
    rows = np.zeros((len(instances), CACHED_WIDTH))
    stages["hashing_and_cache"], _ = timed(lambda: cache.put_many([i.content_key() for i in instances], rows))
    return stages


def measure(name: str, instances: list[Instance], models: ColdModels, baseline: ModuleType, repeats: int) -> dict:
    runs: dict[str, list[float]] = {"before": [], "after": [], "after_bf16": []}
    loads = []
    for repeat in range(repeats):
        runs["before"].append(run_before(models, baseline, instances))
        seconds, bits = run_after(models, instances)
        runs["after"].append(seconds)
        seconds, bits_bf16 = run_after(models, instances, bfloat16=True)
        runs["after_bf16"].append(seconds)
        loads.append(os.getloadavg())
        print(f"{name} repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in runs.items())
              + f", load {loads[-1][0]:.1f}", file=sys.stderr, flush=True)
    stages = stage_seconds(models, instances)
    return {"dataset": name, "rows": len(instances),
            "distinct_responses": len(textual.unique([t for i in instances for t in (i.response_a, i.response_b)])),
            **{f"{variant}_seconds": seconds for variant, seconds in runs.items()},
            **{f"{variant}_pairs_per_second": round(len(instances) / statistics.median(seconds), 1)
               for variant, seconds in runs.items()},
            "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
            "bf16_agreement_with_float32": agreement(bits_bf16, bits),
            "load_average": loads, "load_average_after_stages": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hh-rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "tagging.json")
    args = parser.parse_args()
    rows = {"pandalm": dataset_files.read_dataset(DATASETS["pandalm"]).instances,
            "hh-rlhf": dataset_files.read_dataset(DATASETS["hh-rlhf"]).instances[: args.hh_rows]}
    with tempfile.TemporaryDirectory() as scratch:
        models = ColdModels(Settings().ner_model, Path(scratch))
        baseline = module_at_commit(args.baseline, "services/tagger/textual.py", "baseline_textual",
                                    Path(scratch), BASELINE_IMPORTS)
        results = [measure(name, instances, models, baseline, args.repeats) for name, instances in rows.items()]
    report = {"config": {**vars(args), "out": str(args.out)}, "cores": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{'dataset':8s} {'rows':>5s} {'distinct':>8s} {'before p/s':>10s} {'after p/s':>9s} {'bf16 p/s':>8s}")
    for r in results:
        print(f"{r['dataset']:8s} {r['rows']:>5d} {r['distinct_responses']:>8d} {r['before_pairs_per_second']:>10.1f} "
              f"{r['after_pairs_per_second']:>9.1f} {r['after_bf16_pairs_per_second']:>8.1f}")
        print(f"  stages (s): {r['stage_seconds']}\n  bf16 agreement: {r['bf16_agreement_with_float32']}")


if __name__ == "__main__":
    main()
