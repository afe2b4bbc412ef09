"""`full` mode: fine-tune a Llama-family decoder as a Bradley-Terry reward model (Flax).

The paper's recipe is the default: one epoch, AdamW, learning rate warmed up over 3% of the
steps to 1e-5 and decayed linearly to 1e-6, bf16. Data-parallel and FSDP sharding come from a
`jax.sharding.Mesh` over every device (one CPU here, a GPU, or a TPU pod slice after
`jax.distributed.initialize()`): the batch is split over the mesh's "data" axis and each large
weight along its largest divisible dimension, so the same code runs on all of them.
Checkpoints are written with orbax.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hyper.core.schema import Instance
from hyper.method.run_spec import FullSpec
from hyper_rm_trainer.devices import join_hosts
from hyper_rm_trainer.llama import LlamaRewardModel, LlamaSpec, params_from_safetensors, params_to_hf_tensors

log = logging.getLogger(__name__)
DTYPES = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}


def schedule(config: FullSpec, total_steps: int) -> optax.Schedule:
    warmup = max(1, int(round(config.warmup_fraction * total_steps)))
    return optax.join_schedules([
        optax.linear_schedule(0.0, config.learning_rate, warmup),
        optax.linear_schedule(config.learning_rate, config.final_learning_rate,
                              max(1, total_steps - warmup)),
    ], [warmup])


def device_mesh() -> Mesh:
    return Mesh(np.array(jax.devices()), ("data",))


def fsdp_sharding(params, mesh: Mesh):
    """Each weight split along its largest dimension that the mesh divides; small ones replicated."""
    size = mesh.shape["data"]

    def spec(leaf):
        shape = np.shape(leaf)
        dims = [d for d in np.argsort(shape)[::-1] if shape[d] % size == 0 and shape[d] >= size]
        if size == 1 or len(shape) < 2 or not dims:
            return NamedSharding(mesh, PartitionSpec())
        axes: list[str | None] = [None] * len(shape)
        axes[dims[0]] = "data"
        return NamedSharding(mesh, PartitionSpec(*axes))

    return jax.tree_util.tree_map(spec, params)


def tokenize_pairs(tokenizer, instances: list[Instance], labels: list[str], max_length: int) -> dict:
    """chosen/rejected token batches: prompt + response, cut from the left to keep the end."""
    chosen, rejected = [], []
    for instance, label in zip(instances, labels, strict=True):
        a, b = instance.prompt + instance.response_a, instance.prompt + instance.response_b
        chosen.append(a if label == "A" else b)
        rejected.append(b if label == "A" else a)
    tokenizer.truncation_side = "left"
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = {}
    for side, texts in (("chosen", chosen), ("rejected", rejected)):
        encoded = tokenizer(texts, truncation=True, max_length=max_length, padding="max_length",
                            return_tensors="np")
        batch[f"{side}_ids"], batch[f"{side}_mask"] = encoded["input_ids"], encoded["attention_mask"]
    return batch


def bradley_terry_loss(params, apply_fn, batch):
    chosen = apply_fn(params, batch["chosen_ids"], batch["chosen_mask"])
    rejected = apply_fn(params, batch["rejected_ids"], batch["rejected_mask"])
    margin = (chosen - rejected).astype(jnp.float32)
    return -jnp.mean(jax.nn.log_sigmoid(margin)), jnp.mean(margin > 0)


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: train_state.TrainState, batch: dict):
    (loss, accuracy), grads = jax.value_and_grad(bradley_terry_loss, has_aux=True)(
        state.params, state.apply_fn, batch)
    return state.apply_gradients(grads=grads), {"loss": loss, "accuracy": accuracy}


def create_state(config: FullSpec, total_steps: int, mesh: Mesh) -> train_state.TrainState:
    spec = LlamaSpec.from_pretrained(config.model_dir)
    model = LlamaRewardModel(spec, DTYPES[config.dtype])
    params = params_from_safetensors(config.model_dir, spec, jax.random.key(config.seed))
    params = jax.device_put(params, fsdp_sharding(params, mesh))
    tx = optax.adamw(schedule(config, total_steps), weight_decay=0.0)
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def batch_rows(n: int, batch_size: int, epochs: int, seed: int):
    """Row indices of every full batch of every epoch, in the run's order (a function of the
    seed alone, so a resumed run takes up exactly where the killed one stopped)."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


def train(config: FullSpec, tokenizer, instances: list[Instance], labels: list[str],
          log=lambda step, metrics: None, run_id: str = "") -> train_state.TrainState:
    """One fine-tuning run; ties carry no Bradley-Terry pair and are left out. With
    `checkpoint_every`, the state is saved every that many steps under checkpoint_dir/<run_id>
    and a rerun of the same run (a retried Job) resumes from the latest save."""
    kept = [(i, label) for i, label in zip(instances, labels, strict=True) if label in ("A", "B")]
    data = tokenize_pairs(tokenizer, [i for i, _ in kept], [label for _, label in kept], config.max_length)
    join_hosts(config.distributed)
    mesh = device_mesh()
    if config.batch_size % mesh.shape["data"]:
        raise ValueError(f"batch_size {config.batch_size} must divide over {mesh.shape['data']} devices")
    steps_per_epoch = len(kept) // config.batch_size
    state = create_state(config, max(1, steps_per_epoch * config.epochs), mesh)
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    with checkpoints(config, run_id) as manager, jax.set_mesh(mesh):
        state = manager.restore(state)
        for step, rows in enumerate(batch_rows(len(kept), config.batch_size, config.epochs, config.seed), start=1):
            if step <= int(state.step):
                continue  # done before the restart
            state, metrics = train_step(state, {k: jax.device_put(v[rows], sharding) for k, v in data.items()})
            manager.save(state)
            log(int(state.step), {k: float(v) for k, v in metrics.items()})
        manager.save(state, final=True)
    return state


class RunCheckpoints:
    """Orbax checkpoints of one run's whole train state (params, optimiser state, step)."""

    def __init__(self, directory: Path | None, every: int):
        import orbax.checkpoint as ocp

        self.every = every
        self.manager = None if directory is None else ocp.CheckpointManager(
            directory.resolve(), options=ocp.CheckpointManagerOptions(
                max_to_keep=2, save_interval_steps=max(1, every), enable_async_checkpointing=False))

    def restore(self, state: train_state.TrainState) -> train_state.TrainState:
        import orbax.checkpoint as ocp

        latest = self.manager.latest_step() if self.manager else None
        if self.manager is None or latest is None:
            return state
        log.info("resuming from a checkpoint", extra={"step": latest})
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        return self.manager.restore(latest, args=ocp.args.StandardRestore(abstract))

    def save(self, state: train_state.TrainState, final: bool = False) -> None:
        import orbax.checkpoint as ocp

        periodic = self.every and int(state.step) % self.every == 0
        if self.manager is not None and (final or periodic) and self.manager.latest_step() != int(state.step):
            self.manager.save(int(state.step), args=ocp.args.StandardSave(state), force=final)


@contextlib.contextmanager
def checkpoints(config: FullSpec, run_id: str):
    """The run's checkpoints: checkpoint_dir/<run_id> (or checkpoint_dir itself without a run
    id); none without a checkpoint_dir."""
    directory = Path(config.checkpoint_dir) / run_id if config.checkpoint_dir else None
    saved = RunCheckpoints(directory, config.checkpoint_every)
    try:
        yield saved
    finally:
        if saved.manager is not None:
            saved.manager.close()


def save_hf_checkpoint(state: train_state.TrainState, model_dir: str, tokenizer, out: Path) -> None:
    """A Hugging Face checkpoint of the reward model: safetensors (float32) + the base model's
    config as LlamaForSequenceClassification with one label, and the tokenizer."""
    import json

    from safetensors.numpy import save_file

    spec = LlamaSpec.from_pretrained(model_dir)
    params = jax.tree_util.tree_map(np.asarray, jax.device_get(state.params))
    save_file(params_to_hf_tensors(params, spec), str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((Path(model_dir) / "config.json").read_text())
    config.update(architectures=["LlamaForSequenceClassification"], num_labels=1, id2label={"0": "reward"},
                  label2id={"reward": 0}, pad_token_id=tokenizer.pad_token_id, torch_dtype="float32")
    (out / "config.json").write_text(json.dumps(config, indent=1))
    tokenizer.save_pretrained(str(out))


def reward_margins(state: train_state.TrainState, tokenizer, instances: list[Instance],
                   max_length: int, batch_size: int = 16) -> np.ndarray:
    """r(A) - r(B) for every pair, as the proxy heads report it."""
    data = tokenize_pairs(tokenizer, instances, ["A"] * len(instances), max_length)
    apply = jax.jit(state.apply_fn)
    margins = []
    for start in range(0, len(instances), batch_size):
        part = {k: v[start:start + batch_size] for k, v in data.items()}
        margins.append(np.asarray(apply(state.params, part["chosen_ids"], part["chosen_mask"])
                                  - apply(state.params, part["rejected_ids"], part["rejected_mask"])))
    return np.concatenate(margins)
