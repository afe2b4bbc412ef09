"""A small training experiment as a user copies it onto a cluster's state volume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from hyper.method.run_spec import ProxySpec, RunSpec, save_mixes
from hyper.workflows.training_loop import write_plain_jsonl


def prepare_experiment(state: Path, experiment: str, dataset, n_mixes: int = 3) -> Path:
    """An experiment directory on the state volume: data, mixes and a spec with relative paths
    and no ppm address (the release's ConfigMap has it). Returns the spec's path."""
    directory = state / "experiments" / experiment
    directory.mkdir(parents=True)
    pool = [dataclasses.replace(i, labels={"human": i.labels["human"], "ai": i.labels["human"]})
            for i in dataset.instances[:48]]
    write_plain_jsonl(directory / "pool.jsonl", pool)
    write_plain_jsonl(directory / "eval.jsonl", dataset.instances[48:80])
    masks = np.random.default_rng(0).random((n_mixes, len(pool))) < 0.5
    save_mixes(directory / "mixes.npz", [f"{experiment}-r{i}" for i in range(n_mixes)],
               [i.id for i in pool], masks, masks.sum(axis=1, keepdims=True), ["n_human"])
    spec = RunSpec(experiment=experiment, pool="pool.jsonl", eval="eval.jsonl", mixes="mixes.npz",
                   proxy=ProxySpec(steps=20), cache_dir="../../cache")
    (directory / "spec.json").write_text(spec.model_dump_json(indent=1))
    return directory / "spec.json"
