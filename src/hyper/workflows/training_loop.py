"""The training loop that produces a PPM, on one dataset with human and AI labels.

dataset -> label roles (which label_<source> is the paid human, the AI judge, the reference;
the judge's confidence from the data) -> pool features (tagger) -> knapsack candidate mixes ->
one rm-trainer Job that scores every mix and records it in ppm -> ppm fit -> a versioned PPM
with its cross-validated skill.

A mix's score (the PPM's target) is either the label accuracy of its hybrid labels against the
reference (`label_accuracy`: exact, cheap, what a data team sees) or the accuracy of a proxy
reward model trained on them, on a held-out split (`rm_accuracy`: the paper's target). The AI
labels are the dataset's own (`label_<ai>`); only when no row has them does a judge trained on
the human labels stand in, cross-fitted so that no pair is judged by a model that saw its
label. Everything is keyed by a content hash of the inputs, so a second run with the same
inputs skips the runs already recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hyper.api import proto_convert
from hyper.api.clients import PPMClient, TaggerClient
from hyper.api.messages import DEFAULT_SOURCE
from hyper.core.atomic_files import atomic_open, write_text_atomic
from hyper.core.errors import InvalidArgument
from hyper.core.features import FeatureMatrix
from hyper.core.schema import Dataset, Instance, judge_confidences
from hyper.core.settings import Settings
from hyper.data import ingest
from hyper.data.label_sources import LabelRoles, ResolvedLabels, check_present, resolve, sources_in
from hyper.infra.training_jobs import JobFailed, run_local
from hyper.method.candidates import (
    count_vectors,
    first_in_order,
    knapsack_orders,
    multi_source_assignments,
    multi_source_columns,
    multi_source_counts,
    per_thousand,
)
from hyper.method.embeddings import SentenceEmbedder
from hyper.method.error_models import History, Inputs
from hyper.method.performance_models import TARGETS
from hyper.method.reward_pairs import encode_pairs
from hyper.method.run_spec import ProxySpec, RunSpec, save_mixes, source_role
from hyper.v1 import ppm_pb2

log = logging.getLogger(__name__)

ALL_HUMAN, ALL_AI = "all-human", "all-ai"


@dataclass
class LoopConfig:
    n_candidates: int = 400
    target: str = "label_accuracy"
    eval_fraction: float = 0.2  # held out to score proxy RMs (rm_accuracy only)
    seed: int = 0
    model: str = "default"
    kind: str = "linear"
    cv_folds: int = 5
    roles: LabelRoles = field(default_factory=LabelRoles)
    # Further paid label sources beside the human (e.g. a stronger, costlier judge): mixes then
    # assign each pair to the AI, the human or one of these, and the PPM has columns for each.
    paid_sources: tuple[str, ...] = ()
    proxy: dict = field(default_factory=lambda: ProxySpec().model_dump())


@dataclass
class LoopResult:
    experiment: str
    target: str
    ai_labels: str  # where the AI labels came from
    notes: list[str]  # what the user must know about the labels
    n_pool: int
    n_eval: int
    n_runs: int
    judge_agreement: float  # AI label vs reference, on the pool's scored pairs
    all_human_score: float
    all_ai_score: float
    ppm_version: str
    ppm_skill: dict
    ppm_metrics: dict
    error_model: str = ""  # name/version of the error model fitted on the same pool
    error_model_skill: dict = field(default_factory=dict)


def split_pool_eval(instances: list[Instance], eval_fraction: float, seed: int
                    ) -> tuple[list[Instance], list[Instance]]:
    if not 0.0 < eval_fraction < 1.0:
        raise InvalidArgument("eval_fraction", f"{eval_fraction} is not in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(instances))
    n_eval = int(round(eval_fraction * len(instances)))
    return [instances[i] for i in order[n_eval:]], [instances[i] for i in order[:n_eval]]


def experiment_id(dataset: Dataset, config: LoopConfig, feature_set_version: str) -> str:
    # Only what decides the runs: the PPM fitted on them may change without retraining.
    runs_config = {k: v for k, v in asdict(config).items() if k not in ("model", "kind", "cv_folds")}
    payload = json.dumps([dataset.ids, runs_config, feature_set_version], default=str)
    return "loop-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def write_plain_jsonl(path: Path, instances: list[Instance]) -> None:
    with atomic_open(path) as out:
        for instance in instances:
            out.write(json.dumps(ingest.plain_record(instance)) + "\n")


def in_roles(instances: list[Instance], resolved: ResolvedLabels, paid_sources: tuple[str, ...] = ()
             ) -> list[Instance]:
    """The pairs as the Job reads them: label_human, label_ai, label_reference and label_paid<k>
    for the further paid sources (each where there is one) and the judge's confidence; pairs
    without a human label are left out."""
    out = []
    for k, instance in enumerate(instances):
        if resolved.human[k] is None:
            continue
        paid = [(source_role(j), instance.labels.get(source)) for j, source in enumerate(paid_sources, start=2)]
        labels = {role: label for role, label in (("human", resolved.human[k]), ("ai", resolved.ai[k]),
                                                   ("reference", resolved.reference[k]), *paid) if label}
        confidence = None if np.isnan(resolved.confidence[k]) else float(resolved.confidence[k])
        out.append(dataclasses.replace(instance, labels=labels, judge_confidence=confidence))
    return out


def with_cross_fitted_judge(pool: list[Instance], config: LoopConfig, settings: Settings
                            ) -> list[Instance]:
    """AI labels from a judge trained on the human labels, cross-fitted over the pool: the
    stand-in when the data has no AI labels of its own."""
    from hyper.judges.training import cross_fitted_labels

    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir)
    phi_a, phi_b = encode_pairs(pool, embedder, show_progress=True)
    judge = cross_fitted_labels(phi_a, phi_b, [i.labels["human"] for i in pool], ProxySpec(**config.proxy))
    return [dataclasses.replace(i, labels=dict(i.labels, ai=label), judge_confidence=float(c))
            for i, label, c in zip(pool, judge.labels, judge.confidence, strict=True)]


def candidate_mixes(bits: np.ndarray, n_candidates: int, seed: int, forced: np.ndarray
                    ) -> tuple[list[str], np.ndarray]:
    """Knapsack mixes at distinct random budgets, plus the two single-source mixes; `forced`
    pairs (no AI label) go to humans in every mix, the all-AI one included."""
    n = bits.shape[0]
    if n_candidates < 4:
        raise InvalidArgument("n_candidates", "must be at least 4")
    rng = np.random.default_rng(seed)
    budgets = rng.choice(np.arange(1, n), size=min(n_candidates - 2, n - 1), replace=False)
    mixes = first_in_order(knapsack_orders(bits, len(budgets), rng), budgets)
    masks = np.concatenate([mixes, np.ones((1, n), bool), np.zeros((1, n), bool)]) | forced
    names = [f"c{i:04d}" for i in range(len(budgets))] + [ALL_HUMAN, ALL_AI]
    return names, masks


def multi_source_mixes(bits: np.ndarray, n_candidates: int, seed: int, forced: np.ndarray, n_paid: int
                       ) -> tuple[list[str], np.ndarray]:
    """Mixes over the AI and `n_paid` paid sources, plus one mix per single source."""
    if n_candidates < n_paid + 3:
        raise InvalidArgument("n_candidates", f"must be at least {n_paid + 3}")
    n = bits.shape[0]
    rng = np.random.default_rng(seed)
    mixed = multi_source_assignments(bits, n_candidates - n_paid - 1, n_paid, rng, forced)
    single = np.repeat(np.arange(n_paid + 1, dtype=np.int8)[:, None], n, axis=1)
    single[:, forced] = 1
    names = [f"c{i:04d}" for i in range(len(mixed))] + [ALL_AI, ALL_HUMAN] + [f"all-paid{k}" for k in
                                                                            range(2, n_paid + 1)]
    return names, np.concatenate([mixed, single])


def judge_agreement(pool: list[Instance]) -> float:
    scored = [i for i in pool if "reference" in i.labels]
    return float(np.mean([i.labels.get("ai") == i.labels["reference"] for i in scored])) if scored else float("nan")


def run_loop(dataset: Dataset, config: LoopConfig, settings: Settings, tagger: TaggerClient,
             ppm: PPMClient) -> LoopResult:
    if config.target not in TARGETS:
        raise InvalidArgument("target", f"{config.target!r} is not one of {TARGETS}")
    if config.paid_sources and config.target != "label_accuracy":
        raise InvalidArgument("target", "mixes over more than two sources are scored by label_accuracy only")
    resolved = resolve(dataset.instances, config.roles)
    check_present("paid_sources", config.paid_sources, sources_in(dataset.instances))
    instances = in_roles(dataset.instances, resolved, config.paid_sources)
    eval_set: list[Instance] = []
    pool = instances
    if config.target == "rm_accuracy":
        pool, held_out = split_pool_eval(instances, config.eval_fraction, config.seed)
        eval_set = [i for i in held_out if "reference" in i.labels]
    ai_labels = f"label_{config.roles.ai} from the data"
    if not resolved.ai_in_data:
        ai_labels = "a judge trained on the human labels, cross-fitted (the data has no AI labels)"
        pool = with_cross_fitted_judge(pool, config, settings)
    for note in resolved.notes + [f"AI labels: {ai_labels}"]:
        log.info(note)

    log.info("tagging %d pool pairs", len(pool))
    features = tagger.tag(pool)
    experiment = experiment_id(dataset, config, features.feature_set_version)
    forced = np.array(["ai" not in i.labels for i in pool])
    if config.paid_sources:
        n_paid = 1 + len(config.paid_sources)
        names, masks = multi_source_mixes(features.bits, config.n_candidates, config.seed, forced, n_paid)
        counts = multi_source_counts(masks, features.bits, n_paid)
        columns = multi_source_columns([DEFAULT_SOURCE, *config.paid_sources], features.feature_names)
    else:
        names, masks = candidate_mixes(features.bits, config.n_candidates, config.seed, forced)
        counts, columns = count_vectors(masks, per_thousand(features.bits)), features.feature_names
    workdir = settings.home.resolve() / "experiments" / experiment
    write_plain_jsonl(workdir / "pool.jsonl", pool)
    if eval_set:
        write_plain_jsonl(workdir / "eval.jsonl", eval_set)
    save_mixes(workdir / "mixes.npz", [f"{experiment}-{n}" for n in names], [i.id for i in pool],
               masks, counts, columns)
    spec = RunSpec(experiment=experiment, pool=str(workdir / "pool.jsonl"),
                   eval=str(workdir / "eval.jsonl") if eval_set else "", mixes=str(workdir / "mixes.npz"),
                   ppm_address=settings.address("ppm"), proxy=ProxySpec(**config.proxy),
                   mode="labels" if config.target == "label_accuracy" else "proxy",
                   embedding_model=settings.embedding_model, cache_dir=str(settings.cache_dir.resolve()),
                   feature_set_version=features.feature_set_version)
    write_text_atomic(workdir / "spec.json", spec.model_dump_json(indent=1))

    log.info("scoring %d candidate mixes (%s, experiment %s)", len(names), config.target, experiment)
    [exit_code] = run_local([workdir / "spec.json"], workers=1)
    if exit_code != 0:
        raise JobFailed(f"rm-trainer exited with {exit_code} for {workdir / 'spec.json'}")
    info = ppm.fit(config.model, config.kind, experiment, config.seed, config.cv_folds)
    errors = ppm.fit_error_model(error_model_request(config, features, pool, resolved, experiment))
    runs = {r.run_id: r for r in ppm.list_runs(experiment)}
    skill = {"spearman": info.skill.spearman, "ci_low": info.skill.ci_low,
             "ci_high": info.skill.ci_high, "n_runs": info.skill.n_runs}
    return LoopResult(experiment, config.target, ai_labels, resolved.notes, len(pool), len(eval_set),
                      len(runs), judge_agreement(pool), runs[f"{experiment}-{ALL_HUMAN}"].eval_score,
                      runs[f"{experiment}-{ALL_AI}"].eval_score, info.version, skill, dict(info.metrics),
                      f"{errors.model}/{errors.version}",
                      proto_convert.message_to_dict(errors.error_skill, with_defaults=True))


def history_of(pool: list[Instance], features: FeatureMatrix, resolved: ResolvedLabels) -> History:
    """The pool as an error model learns from it (labels in their roles, see `in_roles`)."""
    def matches(instance: Instance, role: str) -> bool:
        return instance.labels.get(role) is not None and instance.labels.get(role) == instance.labels.get("reference")

    return History(Inputs(features.bits, judge_confidences(pool)),
                   np.array([matches(i, "ai") for i in pool]), np.array([matches(i, "human") for i in pool]),
                   np.array(["reference" in i.labels for i in pool]), np.array(["ai" not in i.labels for i in pool]),
                   resolved.reference_sources == (resolved.roles.human,))


def error_model_request(config: LoopConfig, features: FeatureMatrix, pool: list[Instance], resolved: ResolvedLabels,
                        experiment: str) -> ppm_pb2.FitErrorModelRequest:
    history = history_of(pool, features, resolved)
    return ppm_pb2.FitErrorModelRequest(
        model=f"{config.model}.errors", features=proto_convert.feature_matrix_to_proto(features),
        judge_confidence=history.inputs.confidence.tolist(), judge_correct=history.judge_correct.tolist(),
        human_correct=history.human_correct.tolist(), scored=history.scored.tolist(), forced=history.forced.tolist(),
        human_is_reference=history.human_is_reference, ai_source=config.roles.ai, judges=list(config.roles.judges),
        seed=config.seed, experiment=experiment)
