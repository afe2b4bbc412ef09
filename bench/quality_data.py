"""What the quality benchmarks share: the bundled datasets with their labels in roles, their
features and pair embeddings, and routing and model fitting through the product's own code."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyper.api.messages import RouteOptions
from hyper.core.schema import Instance
from hyper.core.settings import Settings
from hyper.data.dataset_files import read_dataset
from hyper.data.label_sources import LabelRoles, ResolvedLabels, resolve
from hyper.judges.training import cross_fitted_labels
from hyper.method import label_quality
from hyper.method.candidates import count_vectors, first_in_order, knapsack_orders, per_thousand
from hyper.method.embeddings import SentenceEmbedder
from hyper.method.error_models import ErrorModel, History, Inputs
from hyper.method.performance_models import KINDS, PerformanceModel
from hyper.method.reward_pairs import encode_pairs
from hyper.method.run_spec import ProxySpec
from hyper_ppm.fitting import fit_ppm
from hyper_router.problem import ForcedSplit
from hyper_router.route_plan import solve
from hyper_router.selection import RoutingProblem
from hyper_tagger.cache import DiskFeatureCache
from hyper_tagger.descriptive import prototype_tagger
from hyper_tagger.tagging import CACHED_WIDTH, Tagger, features_version
from hyper_tagger.textual import load_ner

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
DATASETS = {
    "pandalm": (DATA / "pandalm-testset.jsonl.gz", LabelRoles("annotator1", "gpt-3.5-turbo", (), ("pandalm-7b",))),
    "mt-bench": (DATA / "llmbar-mtbench.jsonl.gz", LabelRoles("human", "gpt-4", (), ("chatgpt", "llama-2", "palm-2"))),
    "hh-rlhf": (DATA / "hh-rlhf-harmless-base-test.jsonl.gz", LabelRoles("human", "ai")),
}
FOLDS = 5
PROXY = ProxySpec()
_START = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Prepared:
    """One dataset, ready to route: labels in their roles, features, pair embeddings."""

    name: str
    roles: LabelRoles
    resolved: ResolvedLabels
    bits: np.ndarray
    phi: tuple[np.ndarray, np.ndarray]
    folds: np.ndarray  # fold of each pair
    instances: list[Instance]


def with_cross_fitted_ai(instances: list[Instance], phi, folds: np.ndarray) -> list[Instance]:
    """AI labels for a dataset without any: each fold labelled by a judge trained on the others."""
    labels = [i.labels["human"] for i in instances]
    out = list(instances)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        judge = cross_fitted_labels(phi[0], phi[1], [lab if t else "tie" for lab, t in zip(labels, train, strict=True)],
                                    PROXY, n_folds=2)
        for k in np.flatnonzero(test):
            out[k] = dataclasses.replace(out[k], labels=dict(out[k].labels, ai=judge.labels[k]),
                                         judge_confidence=float(judge.confidence[k]))
    return out


def prepare(name: str, settings: Settings, seed: int) -> Prepared:
    path, roles = DATASETS[name]
    instances = read_dataset(path).instances
    folds = np.random.default_rng(seed).permutation(len(instances)) % FOLDS
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir, runtime=settings.embedding_runtime)
    progress(f"{name}: encoding {len(instances)} pairs")
    phi = encode_pairs(instances, embedder)
    if roles.ai not in {s for i in instances for s in i.labels}:
        instances = with_cross_fitted_ai(instances, phi, folds)
    resolved = resolve(instances, roles)
    confidence = np.where(np.isfinite(resolved.confidence), resolved.confidence,
                          [np.nan if i.judge_confidence is None else i.judge_confidence for i in instances])
    resolved.confidence = confidence
    instances = [dataclasses.replace(i, judge_confidence=None if np.isnan(c) else float(c))
                 for i, c in zip(instances, confidence, strict=True)]
    progress(f"{name}: tagging")
    ner, descriptive = load_ner(settings.ner_model), prototype_tagger(embedder)
    version = features_version(embedder, ner, descriptive)  # another version's rows are not these
    tagger = Tagger(embedder, ner, descriptive, DiskFeatureCache(settings.cache_dir / "features" / "bench" / version,
                                                                 CACHED_WIDTH))
    features = tagger.tag(instances).features
    return Prepared(name, roles, resolved, features.bits, phi, folds, instances)


def history_of(data: Prepared, rows: np.ndarray) -> History:
    """Pairs of the dataset as an error model learns from them (what `hyper train` sends ppm)."""
    r = data.resolved
    return History(Inputs(data.bits[rows], r.confidence[rows]), r.correct(r.ai)[rows], r.correct(r.human)[rows],
                   r.scored()[rows], r.forced()[rows], r.reference_sources == (data.roles.human,))


def fit_error_model(data: Prepared, rows: np.ndarray, seed: int) -> ErrorModel:
    return label_quality.fit(history_of(data, rows), [str(j) for j in range(data.bits.shape[1])], data.roles.ai,
                             list(data.roles.judges), seed)


def route_pairs(strategy: str, bits: np.ndarray, ppm: PerformanceModel | None, label_gains: np.ndarray | None,
                confidence: np.ndarray, forced: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Which pairs go to humans, by the router's own solvers (the forced pairs first). A pair
    whose judge confidence is unknown counts as confident: uncertainty routes it last (the
    router would ask the tagger's judge for one)."""
    problem = RoutingProblem.single_source(bits, ppm, budget, confidence=np.nan_to_num(confidence, nan=1.0))
    problem.label_gains = label_gains
    split = ForcedSplit(problem, forced)
    options = RouteOptions(strategy=strategy, seed=seed, n_candidates=500)
    return split.whole(solve(split.at_budget(problem.budget), options))


def oracle_pairs(resolved: ResolvedLabels, budget: int) -> np.ndarray:
    """The ceiling: the first `budget` pairs of the oracle's order (the forced pairs always)."""
    chosen = np.zeros(len(resolved.reference), dtype=bool)
    chosen[resolved.oracle_order()[: max(budget, int(resolved.forced().sum()))]] = True
    return chosen


def subset(resolved: ResolvedLabels, rows: np.ndarray) -> ResolvedLabels:
    return dataclasses.replace(resolved, human=[resolved.human[k] for k in rows], ai=[resolved.ai[k] for k in rows],
                               reference=[resolved.reference[k] for k in rows],
                               confidence=resolved.confidence[rows])


def mixes(bits: np.ndarray, forced: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Knapsack candidate mixes at random budgets, the pairs without an AI label always human."""
    rng = np.random.default_rng(seed)
    return first_in_order(knapsack_orders(bits, n, rng), rng.integers(1, len(bits), n)) | forced


def label_accuracy_ppm(data: Prepared, rows: np.ndarray, n_mixes: int, seed: int,
                       kinds: tuple[str, ...] = KINDS) -> dict[str, PerformanceModel]:
    """PPMs of each kind, fitted on the label accuracy of candidate mixes of the training pairs."""
    labels = subset(data.resolved, rows)
    masks = mixes(data.bits[rows], labels.forced(), n_mixes, seed)
    scores = labels.hybrid_correct(masks).mean(axis=1)
    counts = count_vectors(masks, per_thousand(data.bits[rows]))
    names = [str(k) for k in range(data.bits.shape[1])]
    return {kind: fit_ppm(names, counts, scores, kind, "label_accuracy", seed, pool_size=len(rows))
            for kind in kinds}


def in_parallel(work, seeds: range, data: Prepared, label: str) -> list:
    """work(data, seed) for every seed, on every core (forked workers inherit the data), in
    seed order, with progress every 20 seeds."""
    global _SHARED
    _SHARED = (work, data)
    context = multiprocessing.get_context("fork")
    results = []
    with context.Pool(min(os.cpu_count() or 1, len(seeds) or 1)) as pool:
        for done, result in enumerate(pool.imap(_run_shared, seeds), start=1):
            results.append(result)
            if done % 20 == 0:
                progress(f"{data.name}: {label}, {done} of {len(seeds)} splits")
    return results


_SHARED: tuple = ()


def _run_shared(seed: int):
    work, data = _SHARED
    return work(data, seed)
