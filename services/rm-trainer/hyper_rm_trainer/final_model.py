"""`rm-trainer final`: the reward model a team keeps, trained on the exported hybrid dataset.

The data is what `hyper export` writes: TRL's prompt/chosen/rejected (JSONL or Parquet) or the
project's plain format (label_hybrid). `proxy` trains a Bradley-Terry head on frozen sentence
embeddings (seconds on a CPU; saved as NumPy arrays + JSON, with its cross-fitted agreement);
`full` fine-tunes a Llama-family checkpoint with the paper's recipe and writes a Hugging Face
checkpoint (safetensors + config, LlamaForSequenceClassification with one label, and the
tokenizer) that `transformers`, TRL or RewardBench load. An eval set, when given, is scored
RewardBench-style. The spec, the result and the model land in one directory, all or nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from hyper.core.atomic_files import atomic_directory
from hyper.core.schema import Instance
from hyper.data import dataset_files
from hyper.method.run_spec import FullSpec, ProxySpec

log = logging.getLogger(__name__)

LABEL_OF_FORMAT = {"rewardbench": "human", "plain": "hybrid"}  # TRL rows / hyper export --format jsonl


class FinalSpec(BaseModel):
    data: str = Field(description="the exported hybrid dataset (TRL JSONL/Parquet, or plain with label_hybrid)")
    out: str = Field(description="directory to write: spec.json, result.json and the model")
    mode: Literal["proxy", "full"] = "proxy"
    eval: str = Field("", description="an eval set (plain with label_reference/label_human, or RewardBench's)")
    proxy: ProxySpec = ProxySpec()
    full: FullSpec | None = None
    embedding_model: str = ""
    cache_dir: str = ".hyper/cache"


def training_pairs(path: str) -> tuple[list[Instance], list[str]]:
    dataset = dataset_files.read_dataset(path)
    source = LABEL_OF_FORMAT.get(dataset.format)
    if source is None:
        raise ValueError(f"{path}: a {dataset.format} file; expected `hyper export`'s trl or jsonl output")
    pairs = [i for i in dataset.instances if i.labels.get(source) in ("A", "B")]
    if not pairs:
        raise ValueError(f"{path}: no pair with a preference to train on")
    return pairs, [i.labels[source] for i in pairs]


def eval_accuracy(margins: np.ndarray, instances: list[Instance]) -> dict:
    from hyper.method.reward_pairs import targets_and_weights
    from hyper_rm_trainer.job import eval_scores, reference_labels

    targets, _ = targets_and_weights([label or "tie" for label in reference_labels(instances)])
    return eval_scores(margins, targets, [i.subset for i in instances])


def train_proxy(spec: FinalSpec, pairs: list[Instance], labels: list[str], out: Path) -> dict:
    from hyper.judges.saved_judge import save_judge
    from hyper.judges.training import train_judge
    from hyper.method.embeddings import SentenceEmbedder
    from hyper.method.reward_pairs import encode_pairs

    embedder = SentenceEmbedder(spec.embedding_model, Path(spec.cache_dir))
    phi_a, phi_b = encode_pairs(pairs, embedder, show_progress=True)
    head = train_judge(phi_a, phi_b, labels, spec.proxy, embedder.model_name)
    save_judge(head, out / "reward_head.npz")
    result: dict[str, object] = {"cross_fitted_agreement": head.agreement_with_human}
    if spec.eval:
        evaluation = dataset_files.read_dataset(spec.eval).instances
        result["eval"] = eval_accuracy(head.margins(*encode_pairs(evaluation, embedder)), evaluation)
    return result


def train_full(spec: FinalSpec, pairs: list[Instance], labels: list[str], out: Path) -> dict:
    from transformers import AutoTokenizer

    from hyper_rm_trainer.full_finetune import reward_margins, save_hf_checkpoint, train

    if spec.full is None:
        raise ValueError("mode 'full' needs the 'full' section (model_dir, ...)")
    tokenizer = AutoTokenizer.from_pretrained(spec.full.model_dir)
    losses: list[float] = []

    def progress(step: int, metrics: dict) -> None:
        losses.append(metrics["loss"])
        log.info("step", extra={"step": step, **metrics})

    state = train(spec.full, tokenizer, pairs, labels, log=progress)
    save_hf_checkpoint(state, spec.full.model_dir, tokenizer, out)
    result: dict = {"steps": len(losses), "final_train_loss": losses[-1] if losses else None}
    if spec.eval:
        evaluation = dataset_files.read_dataset(spec.eval).instances
        result["eval"] = eval_accuracy(reward_margins(state, tokenizer, evaluation, spec.full.max_length), evaluation)
    return result


def train_final(spec: FinalSpec) -> dict:
    pairs, labels = training_pairs(spec.data)
    with atomic_directory(spec.out) as out:
        out.mkdir()
        result = (train_full if spec.mode == "full" else train_proxy)(spec, pairs, labels, out)
        result.update(mode=spec.mode, n_pairs=len(pairs), data=spec.data)
        (out / "spec.json").write_text(spec.model_dump_json(indent=1))
        (out / "result.json").write_text(json.dumps(result, indent=1))
    return result
