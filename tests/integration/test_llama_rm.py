"""The Flax Llama matches transformers' PyTorch Llama on the same safetensors weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaModel(config).eval()
    directory = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(directory, safe_serialization=True)
    return directory, model


def test_flax_forward_matches_pytorch_on_the_same_weights(tiny_checkpoint):
    import torch

    from hyper_rm_trainer.llama import LlamaModel, LlamaSpec, params_from_safetensors

    directory, torch_model = tiny_checkpoint
    spec = LlamaSpec.from_pretrained(directory)
    params = params_from_safetensors(directory, spec, jax.random.key(0))
    input_ids = np.random.default_rng(0).integers(0, 97, size=(3, 11))
    attention_mask = np.ones((3, 11), dtype=np.int32)
    attention_mask[1, 7:] = 0  # right padding
    with torch.no_grad():
        expected = torch_model(input_ids=torch.tensor(input_ids),
                               attention_mask=torch.tensor(attention_mask)).last_hidden_state.numpy()
    got = LlamaModel(spec).apply({"params": params["params"]["model"]}, jnp.asarray(input_ids),
                                 jnp.asarray(attention_mask))
    real = attention_mask.astype(bool)
    assert np.allclose(np.asarray(got)[real], expected[real], atol=2e-4)


def test_full_mode_fine_tunes_a_reward_model_and_checkpoints_it(tmp_path, hh_dataset):
    from transformers import AutoTokenizer

    from harness.tiny_llama import make_tiny_llama
    from hyper.method.run_spec import FullSpec
    from hyper_rm_trainer.full_finetune import reward_margins, train

    instances = hh_dataset.instances[:48]
    model_dir = make_tiny_llama(tmp_path / "model", [i.prompt[:300] for i in hh_dataset.instances[:200]])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # Learnable on purpose: A is the longer response, so the model can tell from the text.
    labels = ["A" if len(i.response_a) >= len(i.response_b) else "B" for i in instances]
    config = FullSpec(model_dir=str(model_dir), learning_rate=3e-3, final_learning_rate=3e-4,
                        epochs=4, batch_size=8, max_length=96, dtype="float32",
                        checkpoint_dir=str(tmp_path / "ckpt"))
    losses = []
    state = train(config, tokenizer, instances, labels, log=lambda step, m: losses.append(m["loss"]))
    assert int(state.step) == 4 * (48 // 8)
    assert np.mean(losses[-6:]) < np.mean(losses[:6])  # it learns
    margins = reward_margins(state, tokenizer, instances[:8], config.max_length)
    assert margins.shape == (8,) and np.isfinite(margins).all()
    assert [p.name for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit()] == ["24"]  # the final state


class Killed(Exception):
    pass


def test_a_killed_full_mode_run_resumes_from_its_last_checkpoint(tmp_path, hh_dataset):
    """Killed after step 5 with a checkpoint every 2 steps: the rerun of the run starts at
    step 5 from step 4's state and ends where an uninterrupted run ends."""
    from transformers import AutoTokenizer

    from harness.tiny_llama import make_tiny_llama
    from hyper.method.run_spec import FullSpec
    from hyper_rm_trainer.full_finetune import train

    instances = hh_dataset.instances[:32]
    model_dir = make_tiny_llama(tmp_path / "model", [i.prompt[:300] for i in hh_dataset.instances[:200]])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    labels = [i.labels["human"] for i in instances]
    config = FullSpec(model_dir=str(model_dir), learning_rate=3e-3, epochs=2, batch_size=8, max_length=64,
                      dtype="float32", checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=2)

    def kill_after_5(step, metrics):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train(config, tokenizer, instances, labels, log=kill_after_5, run_id="run-7")
    steps = []
    resumed = train(config, tokenizer, instances, labels, log=lambda step, m: steps.append(step), run_id="run-7")
    assert steps == [5, 6, 7, 8]
    uninterrupted = train(config.model_copy(update={"checkpoint_dir": ""}), tokenizer, instances, labels)
    for got, expected in zip(jax.tree_util.tree_leaves(resumed.params),
                             jax.tree_util.tree_leaves(uninterrupted.params), strict=True):
        assert np.allclose(got, expected, atol=1e-5)


SHARDED_RUN = """
import jax, numpy as np
from transformers import AutoTokenizer
from hyper.data import dataset_files
from hyper_rm_trainer.full_finetune import train
from hyper.method.run_spec import FullSpec
assert len(jax.devices()) == 4
data = dataset_files.read_dataset("{data}").instances[:16]
state = train(FullSpec(model_dir="{model}", batch_size=8, max_length=48, dtype="float32"),
              AutoTokenizer.from_pretrained("{model}"), data, [i.labels["human"] for i in data])
kernel = state.params["params"]["model"]["layers_0"]["mlp"]["up_proj"]["kernel"]
print("shards", len(kernel.addressable_shards), "step", int(state.step))
"""


def test_full_mode_shards_params_and_batches_over_a_device_mesh(tmp_path, hh_dataset):
    """Four host devices stand in for a GPU node or a TPU slice: the same code path shards."""
    import os
    import subprocess
    import sys

    from harness.local import HH_DATA
    from harness.tiny_llama import make_tiny_llama

    model = make_tiny_llama(tmp_path / "model", [i.prompt[:300] for i in hh_dataset.instances[:100]])
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SHARDED_RUN.format(data=HH_DATA, model=model)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "shards 4 step 2" in result.stdout
