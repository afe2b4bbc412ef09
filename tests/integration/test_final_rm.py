"""`rm-trainer final`: the final reward model on an exported hybrid dataset, in both modes; the
full-mode result as a Hugging Face checkpoint that transformers loads and scores the same."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from harness.local import HH_DATA
from harness.tiny_llama import make_tiny_llama
from hyper.data import dataset_files
from hyper.labelling.hybrid_dataset import preference_rows, single_source_pairs, write_rows


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """HH-RLHF's human labels as `hyper export --format trl` writes them, and an eval split."""
    directory = tmp_path_factory.mktemp("export")
    instances = dataset_files.read_dataset(HH_DATA).instances
    rows, _ = preference_rows(single_source_pairs(instances[:300], "human"), "drop", "trl")
    write_rows(rows, directory / "train.jsonl", "trl")
    evaluation, _ = preference_rows(single_source_pairs(instances[300:400], "human"), "drop", "jsonl")
    write_rows(evaluation, directory / "eval.jsonl", "jsonl")
    return directory


def rm_trainer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyper_rm_trainer.job", "final", *args],
                          capture_output=True, text=True, timeout=900)


def test_proxy_final_rm_trains_on_the_export_and_scores_the_eval_set(exported, tmp_path):
    out = tmp_path / "rm"
    done = rm_trainer("--data", str(exported / "train.jsonl"), "--eval", str(exported / "eval.jsonl"),
                      "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["n_pairs"] == 300 and result["mode"] == "proxy"
    assert 0.0 <= result["eval"]["overall"] <= 1.0 and 0.0 <= result["cross_fitted_agreement"] <= 1.0
    assert {p.name for p in out.iterdir()} == {"spec.json", "result.json", "reward_head.npz", "reward_head.json"}


def test_bad_input_is_refused_and_nothing_is_written(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "x", "rejected": null}\n')
    done = rm_trainer("--data", str(bad), "--out", str(tmp_path / "rm"))
    assert done.returncode == 2 and "field 'rejected'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "rm").exists()


@pytest.fixture(scope="module")
def full_rm(exported, tmp_path_factory):
    """A full-mode final RM of a tiny local Llama, and how it was trained."""
    from hyper.method.run_spec import FullSpec
    from hyper_rm_trainer.final_model import FinalSpec, train_final, training_pairs

    directory = tmp_path_factory.mktemp("full")
    pairs, _ = training_pairs(str(exported / "train.jsonl"))
    base = make_tiny_llama(directory / "base", [i.prompt[:300] for i in pairs])
    full = FullSpec(model_dir=str(base), batch_size=8, max_length=64, dtype="float32", learning_rate=1e-3)
    result = train_final(FinalSpec(data=str(exported / "train.jsonl"), out=str(directory / "rm"), mode="full",
                                   full=full, eval=str(exported / "eval.jsonl")))
    return directory / "rm", full, pairs, result


def test_full_final_rm_is_a_checkpoint_transformers_loads(full_rm):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hyper_rm_trainer.full_finetune import reward_margins, train

    checkpoint, full, pairs, result = full_rm
    assert result["steps"] == 300 // 8 and np.isfinite(result["final_train_loss"])
    assert 0.0 <= result["eval"]["overall"] <= 1.0
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    sample = pairs[:4]
    with torch.no_grad():
        rewards = {side: model(**tokenizer([i.prompt + getattr(i, side) for i in sample], return_tensors="pt",
                                           padding=True, truncation=True, max_length=64)).logits[:, 0].numpy()
                   for side in ("response_a", "response_b")}
    # The same weights in Flax (trained again from the same seed) give the same margins.
    base = AutoTokenizer.from_pretrained(full.model_dir)
    state = train(full, base, pairs, [i.labels["human"] for i in pairs])
    flax_margins = reward_margins(state, base, sample, 64)
    assert np.allclose(rewards["response_a"] - rewards["response_b"], flax_margins, atol=1e-3)


def test_trls_reward_trainer_reads_the_export_and_continues_from_the_checkpoint(full_rm, exported, tmp_path):
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    checkpoint = full_rm[0]
    instances = dataset_files.read_dataset(HH_DATA).instances[:64]
    rows, _ = preference_rows(single_source_pairs(instances, "human"), "drop", "trl", conversational=False)
    write_rows(rows, tmp_path / "hf", "hf")
    config = RewardConfig(output_dir=str(tmp_path / "trl"), max_steps=2, per_device_train_batch_size=4,
                          report_to=[], use_cpu=True, max_length=256, logging_steps=1, save_strategy="no")
    trainer = RewardTrainer(model=AutoModelForSequenceClassification.from_pretrained(checkpoint), args=config,
                            train_dataset=datasets.load_from_disk(str(tmp_path / "hf")),
                            processing_class=AutoTokenizer.from_pretrained(checkpoint))
    assert np.isfinite(trainer.train().training_loss)
