"""The training loop that produces a PPM, on one human-labelled dataset.

dataset -> held-out eval split -> AI labels for the pool (cross-fitted judge) -> pool features
(tagger) -> knapsack candidate mixes -> one rm-trainer Job (a proxy RM per mix, eval accuracy
recorded in ppm) -> ppm fit -> a versioned PPM. Everything is keyed by a content hash of the
inputs, so a second run with the same inputs skips the runs already recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hyper import ingest
from hyper.atomic import atomic_open, write_text_atomic
from hyper.candidates import count_vectors, first_in_order, knapsack_orders
from hyper.clients import PPMClient, TaggerClient
from hyper.config import Settings
from hyper.embeddings import SentenceEmbedder
from hyper.errors import InvalidArgument
from hyper.jobs import JobFailed, run_local
from hyper.judge_training import cross_fitted_labels
from hyper.pairs import encode_pairs
from hyper.run_spec import ProxySpec, RunSpec, save_mixes
from hyper.schema import Dataset, Instance

log = logging.getLogger(__name__)

ALL_HUMAN, ALL_AI = "all-human", "all-ai"


@dataclass
class LoopConfig:
    n_candidates: int = 48
    eval_fraction: float = 0.2
    holdout_fraction: float = 0.2
    seed: int = 0
    model: str = "default"
    kind: str = "linear"
    n_bootstrap: int = 20
    proxy: dict = field(default_factory=lambda: ProxySpec().model_dump())


@dataclass
class LoopResult:
    experiment: str
    n_pool: int
    n_eval: int
    n_runs: int
    judge_agreement: float
    all_human_accuracy: float
    all_ai_accuracy: float
    ppm_version: str
    ppm_metrics: dict


def split_pool_eval(instances: list[Instance], eval_fraction: float, seed: int
                    ) -> tuple[list[Instance], list[Instance]]:
    if not 0.0 < eval_fraction < 1.0:
        raise InvalidArgument("eval_fraction", f"{eval_fraction} is not in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(instances))
    n_eval = int(round(eval_fraction * len(instances)))
    return [instances[i] for i in order[n_eval:]], [instances[i] for i in order[:n_eval]]


def experiment_id(dataset: Dataset, config: LoopConfig, feature_set_version: str) -> str:
    # Only what decides the runs: the PPM fitted on them may change without retraining.
    runs_config = {k: v for k, v in asdict(config).items() if k not in ("model", "kind", "n_bootstrap")}
    payload = json.dumps([dataset.ids, runs_config, feature_set_version])
    return "loop-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def write_plain_jsonl(path: Path, instances: list[Instance]) -> None:
    with atomic_open(path) as out:
        for instance in instances:
            out.write(json.dumps(ingest.plain_record(instance)) + "\n")


def with_ai_labels(pool: list[Instance], labels: list[str], confidence: np.ndarray) -> list[Instance]:
    return [dataclasses.replace(i, labels=dict(i.labels, ai=label), judge_confidence=float(c))
            for i, label, c in zip(pool, labels, confidence, strict=True)]


def candidate_mixes(bits: np.ndarray, n_candidates: int, seed: int
                    ) -> tuple[list[str], np.ndarray]:
    """Knapsack mixes at distinct random budgets, plus the two single-source mixes."""
    n = bits.shape[0]
    if n_candidates < 4:
        raise InvalidArgument("n_candidates", "must be at least 4")
    rng = np.random.default_rng(seed)
    budgets = rng.choice(np.arange(1, n), size=min(n_candidates - 2, n - 1), replace=False)
    mixes = first_in_order(knapsack_orders(bits, len(budgets), rng), budgets)
    masks = np.concatenate([mixes, np.ones((1, n), bool), np.zeros((1, n), bool)])
    names = [f"c{i:04d}" for i in range(len(budgets))] + [ALL_HUMAN, ALL_AI]
    return names, masks


def run_loop(dataset: Dataset, config: LoopConfig, settings: Settings, tagger: TaggerClient,
             ppm: PPMClient) -> LoopResult:
    pool, eval_set = split_pool_eval(dataset.instances, config.eval_fraction, config.seed)
    proxy = ProxySpec(**config.proxy)
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir)
    log.info("AI judge: cross-fitting on %d pool pairs", len(pool))
    phi_a, phi_b = encode_pairs(pool, embedder, show_progress=True)
    judge = cross_fitted_labels(phi_a, phi_b, [i.labels["human"] for i in pool], proxy)
    pool = with_ai_labels(pool, judge.labels, judge.confidence)

    log.info("tagging %d pool pairs", len(pool))
    features = tagger.tag(pool)
    experiment = experiment_id(dataset, config, features.feature_set_version)
    names, masks = candidate_mixes(features.bits, config.n_candidates, config.seed)
    workdir = settings.home.resolve() / "experiments" / experiment
    workdir.mkdir(parents=True, exist_ok=True)
    write_plain_jsonl(workdir / "pool.jsonl", pool)
    write_plain_jsonl(workdir / "eval.jsonl", eval_set)
    save_mixes(workdir / "mixes.npz", [f"{experiment}-{n}" for n in names], [i.id for i in pool],
               masks, count_vectors(masks, features.bits), features.feature_names)
    spec = RunSpec(experiment=experiment, pool=str(workdir / "pool.jsonl"),
                   eval=str(workdir / "eval.jsonl"), mixes=str(workdir / "mixes.npz"),
                   ppm_address=settings.address("ppm"), proxy=proxy,
                   embedding_model=settings.embedding_model,
                   cache_dir=str(settings.cache_dir.resolve()))
    write_text_atomic(workdir / "spec.json", spec.model_dump_json(indent=1))

    log.info("training %d proxy reward models (experiment %s)", len(names), experiment)
    [exit_code] = run_local([workdir / "spec.json"], workers=1)
    if exit_code != 0:
        raise JobFailed(f"rm-trainer exited with {exit_code} for {workdir / 'spec.json'}")
    info = ppm.fit(config.model, config.kind, experiment, config.holdout_fraction, config.seed,
                   config.n_bootstrap)
    runs = {r.run_id: r for r in ppm.list_runs(experiment)}
    return LoopResult(experiment, len(pool), len(eval_set), len(runs), judge.agreement_with_human,
                      runs[f"{experiment}-{ALL_HUMAN}"].eval_score,
                      runs[f"{experiment}-{ALL_AI}"].eval_score, info.version, dict(info.metrics))
