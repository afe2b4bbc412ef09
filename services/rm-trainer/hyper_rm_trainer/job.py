"""The rm-trainer Job: score each candidate mix and report it to ppm. A mix's score is, by the
spec's mode, the accuracy of a reward model trained on its labels (`proxy`: a head per mix on
frozen embeddings; `full`: a fine-tuned decoder per mix) on held-out pairs, or (`labels`) the
accuracy of its labels themselves against the reference labels of the pool.

The same entry point is the container's command in Kubernetes and a subprocess of the local
runner. It exits 0 only once every run of the spec has its result; runs with a result (a
retried Job) are skipped, and a crash records the unfinished runs as failed with the reason
and exits 1, so that Kubernetes retries the pod (backoffLimit) and the retry trains the rest.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyper.api import proto_convert, serving
from hyper.api.clients import PPMClient
from hyper.core import logs
from hyper.core.errors import HyperError
from hyper.core.schema import Instance
from hyper.core.settings import Settings
from hyper.data import dataset_files
from hyper.method.embeddings import SentenceEmbedder
from hyper.method.proxy_rm import predict_margins, train_heads
from hyper.method.reward_pairs import encode_pairs, targets_and_weights
from hyper.method.run_spec import ProxySpec, RunSpec, load_mixes, source_role, spans_hosts
from hyper.v1 import ppm_pb2
from hyper_rm_trainer import devices
from hyper_rm_trainer.evaluation import rewardbench_scores

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    phi_a: np.ndarray
    phi_b: np.ndarray
    human: tuple[np.ndarray, np.ndarray]  # targets, weights
    ai: tuple[np.ndarray, np.ndarray]


NO_LABEL = "tie"  # a pair whose label is missing gives no Bradley-Terry pair, like a tie


def read_pool(spec: RunSpec, expected_ids: list[str]) -> list[Instance]:
    pool = dataset_files.read_dataset(spec.pool, "plain")
    if pool.ids != expected_ids:
        raise ValueError(f"{spec.mixes}: instance_ids do not match the pool {spec.pool}")
    return pool.instances


def mix_labels(pool: list[Instance], assignment: np.ndarray) -> list[str]:
    """One mix's labels: each pair's from the source the mix assigns it (a boolean mask: human
    where True, the AI judge's elsewhere). The loop routes a pair without an AI label to humans
    in every mix, so NO_LABEL stands in only where the data has no label at all."""
    return [i.labels.get(source_role(int(source)), NO_LABEL) for i, source in zip(pool, assignment, strict=True)]


def two_source(mixes: dict) -> np.ndarray:
    """The mixes' human masks, for the modes that train reward models on human or AI labels."""
    if mixes["assignments"].max(initial=0) > 1:
        raise ValueError("mixes over more than two sources are scored in mode 'labels' only")
    return mixes["human_masks"]


def reference_labels(instances: list[Instance]) -> list[str | None]:
    """What scores a label or a reward model: the reference label, else the human label."""
    return [i.labels.get("reference", i.labels.get("human")) for i in instances]


def encode_pool(pool: list[Instance], embedder: SentenceEmbedder) -> Encoded:
    phi_a, phi_b = encode_pairs(pool, embedder)
    return Encoded(phi_a, phi_b, targets_and_weights([i.labels.get("human", NO_LABEL) for i in pool]),
                   targets_and_weights([i.labels.get("ai", NO_LABEL) for i in pool]))


def mix_targets(encoded: Encoded, human_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's labels: human where routed to humans, the AI judge's elsewhere."""
    targets = np.where(human_masks, encoded.human[0], encoded.ai[0])
    weights = np.where(human_masks, encoded.human[1], encoded.ai[1])
    return targets.astype(np.float32), weights.astype(np.float32)


def train_and_evaluate(encoded: Encoded, eval_pairs: tuple[np.ndarray, np.ndarray],
                       human_masks: np.ndarray, config: ProxySpec) -> tuple[np.ndarray, np.ndarray]:
    """One proxy RM per mix (one vmapped program): its margins r(A) - r(B) on the eval pairs,
    (n_mixes, n_eval), and its final training loss."""
    targets, weights = mix_targets(encoded, human_masks)
    params, losses = train_heads(encoded.phi_a, encoded.phi_b, targets, weights, config)
    return predict_margins(params, eval_pairs[0], eval_pairs[1], config), np.asarray(losses)


def eval_scores(margins: np.ndarray, eval_targets: np.ndarray, subsets: list[str]) -> dict:
    """RewardBench-style scores of one RM; pairs the human called a tie are left out."""
    decided = eval_targets != 0
    correct = np.sign(margins[decided]) == eval_targets[decided]
    return rewardbench_scores(correct, [s for s, d in zip(subsets, decided, strict=True) if d])


def _run(spec: RunSpec, index: int, mixes: dict, scores: dict, loss: float) -> ppm_pb2.Run:
    metrics = {"final_train_loss": loss, "overall": scores["overall"]}
    metrics.update({f"category/{k}": v for k, v in scores["categories"].items()})
    metrics.update({f"subset/{k}": v for k, v in scores["subsets"].items()})
    return _result(spec, index, mixes, scores["overall"], metrics, "rm_accuracy")


def _result(spec: RunSpec, index: int, mixes: dict, score: float, metrics: dict,
            score_name: str) -> ppm_pb2.Run:
    return ppm_pb2.Run(
        run_id=str(mixes["run_ids"][index]), experiment=spec.experiment, state="succeeded",
        eval_score=score, score=score_name, feature_set_version=spec.feature_set_version,
        count_vector=proto_convert.count_vectors_to_proto(mixes["feature_names"].tolist(),
                                                 mixes["count_vectors"][index]),
        n_human=int(mixes["human_masks"][index].sum()), n_total=mixes["human_masks"].shape[1],
        metrics=metrics,
        config_json=spec.model_dump_json())


def score_labels_and_record(spec: RunSpec, mixes: dict, pending: list[int], ppm: PPMClient) -> None:
    """`labels` mode: each mix's score is the share of the pool's scored pairs (those with a
    reference label) whose mix label matches the reference."""
    pool = read_pool(spec, mixes["instance_ids"].tolist())
    reference = reference_labels(pool)
    scored = [k for k, label in enumerate(reference) if label is not None]
    if not scored:
        raise ValueError(f"{spec.pool}: no pair has a reference label to score mixes against")
    for index in pending:
        labels = mix_labels(pool, mixes["assignments"][index])
        accuracy = float(np.mean([labels[k] == reference[k] for k in scored]))
        ppm.record_run(_result(spec, index, mixes, accuracy, {"n_scored": float(len(scored))},
                               "label_accuracy"))
    log.info("progress", extra={"scored": len(pending), "of": len(pending)})


def train_and_record(spec: RunSpec, mixes: dict, pending: list[int], ppm: PPMClient) -> None:
    embedder = SentenceEmbedder(spec.embedding_model, spec.cache_dir)
    encoded = encode_pool(read_pool(spec, mixes["instance_ids"].tolist()), embedder)
    eval_set = dataset_files.read_dataset(spec.eval)  # plain, or RewardBench's layout
    eval_a, eval_b = encode_pairs(eval_set.instances, embedder)
    eval_targets, _ = targets_and_weights([label or NO_LABEL for label in reference_labels(eval_set.instances)])
    config = spec.proxy
    subsets = [i.subset for i in eval_set.instances]
    human_masks = two_source(mixes)
    for start in range(0, len(pending), spec.chunk_size):
        chunk = pending[start:start + spec.chunk_size]
        margins, losses = train_and_evaluate(encoded, (eval_a, eval_b), human_masks[chunk],
                                             config)
        for index, row, loss in zip(chunk, margins, losses.tolist(), strict=True):
            ppm.record_run(_run(spec, index, mixes, eval_scores(row, eval_targets, subsets), loss))
        log.info("progress", extra={"trained": start + len(chunk), "of": len(pending)})


def log_step(run: str, losses: list[float], step: int, metrics: dict) -> None:
    """What a person watching a full-mode run sees, one line per step; the losses are kept."""
    losses.append(metrics["loss"])
    log.info("step", extra={"run": run, "step": step, **metrics})


def train_full_and_record(spec: RunSpec, mixes: dict, pending: list[int], ppm: PPMClient) -> None:
    """`full` mode: one fine-tuned decoder RM per mix, one after the other."""
    from transformers import AutoTokenizer

    from hyper_rm_trainer.full_finetune import reward_margins, train

    if spec.full is None:
        raise ValueError("mode 'full' needs the 'full' section (model_dir, ...)")
    pool = read_pool(spec, mixes["instance_ids"].tolist())
    eval_set = dataset_files.read_dataset(spec.eval)
    eval_targets, _ = targets_and_weights([label or NO_LABEL for label in reference_labels(eval_set.instances)])
    config = spec.full
    tokenizer = AutoTokenizer.from_pretrained(config.model_dir)
    human_masks = two_source(mixes)
    for index in pending:
        labels = mix_labels(pool, human_masks[index])
        losses: list[float] = []
        run_id = str(mixes["run_ids"][index])
        state = train(config, tokenizer, pool, labels, log=functools.partial(log_step, run_id, losses), run_id=run_id)
        margins = reward_margins(state, tokenizer, eval_set.instances, config.max_length)
        scores = eval_scores(margins, eval_targets, [i.subset for i in eval_set.instances])
        ppm.record_run(_run(spec, index, mixes, scores, losses[-1] if losses else 0.0))


MODES = {"proxy": train_and_record, "full": train_full_and_record, "labels": score_labels_and_record}


def finished_runs(ppm: PPMClient, experiment: str) -> set[str]:
    return {r.run_id for r in ppm.list_runs(experiment) if r.state == "succeeded"}


def record_failures(spec: RunSpec, mixes: dict, ppm: PPMClient, reason: str) -> None:
    done = finished_runs(ppm, spec.experiment)
    for run_id in mixes["run_ids"].tolist():
        if run_id not in done:
            ppm.record_run(ppm_pb2.Run(run_id=run_id, experiment=spec.experiment,
                                       state="failed", failure_reason=reason[:2000],
                                       feature_set_version=spec.feature_set_version,
                                       config_json=spec.model_dump_json()))


def run_job(spec: RunSpec) -> int:
    settings = Settings()
    ppm = PPMClient(serving.channel(spec.ppm_address or settings.address("ppm"), settings),
                    record_token=settings.ppm_record_token)
    mixes = load_mixes(spec.mixes)
    done = finished_runs(ppm, spec.experiment)
    pending = [i for i, run_id in enumerate(mixes["run_ids"].tolist()) if run_id not in done]
    log.info("starting", extra={"experiment": spec.experiment, "pending": len(pending),
                                "already_finished": len(mixes["run_ids"]) - len(pending)})
    if not pending:
        return 0
    try:
        MODES[spec.mode](spec, mixes, pending, ppm)
    except Exception as error:  # noqa: BLE001 - every unfinished run gets a recorded reason
        log.exception("training failed")
        record_failures(spec, mixes, ppm, f"{type(error).__name__}: {error}")
        return 1
    return 0


def start_devices(distributed: bool) -> None:
    """Before the data is read or anything recorded: join the slice's hosts and check that JAX has the
    accelerator the Job was scheduled for, else exit EXIT_NO_ACCELERATOR saying why."""
    try:
        devices.start(distributed)
    except devices.AcceleratorMissing as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(devices.EXIT_NO_ACCELERATOR)


def final_main(argv: list[str]) -> None:
    """`rm-trainer final`: one reward model on an exported hybrid dataset (see final.py)."""
    import json

    from hyper_rm_trainer.final_model import FinalSpec, train_final

    parser = argparse.ArgumentParser(prog="rm-trainer final", description="train the final reward model on "
                                     "the dataset `hyper export` wrote")
    parser.add_argument("--spec", help="a FinalSpec JSON file (the flags below override it)")
    parser.add_argument("--data")
    parser.add_argument("--out")
    parser.add_argument("--mode", choices=("proxy", "full"))
    parser.add_argument("--eval", help="an eval set to score the model on")
    parser.add_argument("--model-dir", help="full mode: the Llama-family checkpoint to fine-tune")
    args = parser.parse_args(argv)
    tree = json.loads(Path(args.spec).read_text()) if args.spec else {}
    tree.update({k: v for k, v in {"data": args.data, "out": args.out, "mode": args.mode,
                                   "eval": args.eval}.items() if v is not None})
    if args.model_dir:
        tree["full"] = {**tree.get("full", {}), "model_dir": args.model_dir}
    try:
        spec = FinalSpec.model_validate(tree)
        start_devices(spans_hosts(spec.mode, spec.full))
        result = train_final(spec)
    except (ValueError, HyperError) as error:  # pydantic's ValidationError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    logs.configure("rm-trainer", Settings().log_level)
    if argv[:1] == ["final"]:
        final_main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="rm-trainer", description=__doc__)
    parser.add_argument("--spec", required=True, help="path of the run spec (JSON)")
    args = parser.parse_args(argv)
    try:
        spec = RunSpec.load(args.spec)
    except (OSError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        print(f"error: spec {args.spec}: {error}", file=sys.stderr)
        sys.exit(2)
    start_devices(spec.distributed)
    sys.exit(run_job(spec))


if __name__ == "__main__":
    main()
