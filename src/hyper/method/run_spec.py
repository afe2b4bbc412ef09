"""The run spec of a training Job: one typed tree, filled from a JSON file (the CLI, the local
runner and a Kubernetes Job all pass the same file), saved with every result.

It is a contract between the training loop (which writes it) and the rm-trainer Job (which
reads it), like the protos, so it lives in the library. Each model here is the one source of
its defaults: the trainers take these models themselves, not copies of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hyper.core.atomic_files import atomic_open


class ProxySpec(BaseModel):
    """A proxy reward model: a Bradley-Terry head on frozen sentence embeddings. Frozen, so
    that one compiled trainer serves every spec equal to it."""

    model_config = ConfigDict(frozen=True)

    hidden: int = Field(0, ge=0, description="hidden units; 0 = a linear head")
    steps: int = Field(150, ge=1)
    learning_rate: float = Field(0.02, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    seed: int = 0


class FullSpec(BaseModel):
    """`full` mode: fine-tune this Llama-family checkpoint (safetensors) as the reward model."""

    model_dir: str
    learning_rate: float = Field(1e-5, gt=0)
    final_learning_rate: float = Field(1e-6, gt=0)
    warmup_fraction: float = Field(0.03, ge=0, lt=1)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(128, ge=1)
    max_length: int = Field(4096, ge=8)
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    seed: int = 0
    # Orbax checkpoints of each run under checkpoint_dir/<run id>: every `checkpoint_every`
    # steps (0: at the end only), so a killed and retried Job resumes instead of starting over.
    checkpoint_dir: str = ""
    checkpoint_every: int = Field(0, ge=0)
    # Multi-host (a TPU pod slice, several GPU nodes): join the other hosts with
    # jax.distributed.initialize() before building the mesh; JAX reads the coordinator from
    # the environment (TPU metadata, or JAX_COORDINATOR_ADDRESS / process id and count).
    distributed: bool = False


def spans_hosts(mode: str, full: FullSpec | None) -> bool:
    """Whether a training job spans the hosts of a slice (`full.distributed`, full mode only):
    the spec says how its program runs; the Job's settings (`hyper jobs --tpu-hosts`) on which
    slice, so that one spec runs on slices of any size."""
    return mode == "full" and full is not None and full.distributed


class RunSpec(BaseModel):
    experiment: str
    # Data moves by reference: paths (or, later, object-store URIs), never inline in gRPC.
    # A relative path is relative to the spec file, so an experiment directory can be copied
    # onto a cluster's shared volume and run there unchanged.
    pool: str = Field(description="plain-format JSONL with label_human, label_ai (absent where "
                                  "the judge gave none) and label_reference (where there is one)")
    eval: str = Field("", description="plain-format JSONL with label_reference (or label_human), "
                                      "or RewardBench's layout; not read in mode labels")
    mixes: str = Field(description=".npz: run_ids, instance_ids, human_masks, count_vectors, "
                                   "feature_names")
    # Empty: HYPER_PPM_ADDRESS of the Job's environment (what the chart sets in the cluster).
    ppm_address: str = ""
    # What scores a mix: a proxy RM's accuracy on `eval`, a fine-tuned decoder RM's (full), or
    # its labels' own accuracy against the pool's reference labels (labels).
    mode: Literal["proxy", "full", "labels"] = "proxy"
    proxy: ProxySpec = ProxySpec()
    full: FullSpec | None = None
    embedding_model: str = ""
    # The tagger's feature-set version the mixes were counted on: each run records it, and a
    # PPM fitted on the runs carries it, so a Route on other features can say so.
    feature_set_version: str = ""
    cache_dir: str = ".hyper/cache"
    chunk_size: int = Field(64, ge=1)

    @property
    def distributed(self) -> bool:
        return spans_hosts(self.mode, self.full)

    @classmethod
    def load(cls, path: str | Path) -> RunSpec:
        spec = cls.model_validate_json(Path(path).read_text())
        base = Path(path).resolve().parent
        return spec.model_copy(update={name: str(base / getattr(spec, name))
                                       for name in ("pool", "eval", "mixes", "cache_dir")
                                       if getattr(spec, name)})


MIX_ARRAYS = ("run_ids", "instance_ids", "human_masks", "count_vectors", "feature_names")
# A mix's source per pair: 0 the AI (label_ai), 1 the human (label_human), k >= 2 the pool's
# label_paid<k> (further paid sources). Two-source mixes are their human masks.
SOURCE_ROLES = ("ai", "human")


def source_role(index: int) -> str:
    return SOURCE_ROLES[index] if index < len(SOURCE_ROLES) else f"paid{index}"


def save_mixes(path: Path, run_ids: list[str], instance_ids: list[str], assignments: np.ndarray,
               count_vectors: np.ndarray, feature_names: list[str]) -> None:
    """`assignments`: (n_mixes, n) source indices, or boolean human masks."""
    with atomic_open(path, "wb") as out:
        np.savez_compressed(out, run_ids=np.array(run_ids), instance_ids=np.array(instance_ids),
                            human_masks=np.asarray(assignments) == 1, assignments=np.asarray(assignments, np.int8),
                            count_vectors=count_vectors.astype(np.float64),
                            feature_names=np.array(feature_names))


def load_mixes(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        mixes = {name: data[name] for name in MIX_ARRAYS}
        mixes["assignments"] = (data["assignments"] if "assignments" in data.files
                                else mixes["human_masks"].astype(np.int8))
        return mixes
