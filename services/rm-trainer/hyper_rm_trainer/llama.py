"""A Llama-family decoder in Flax, loaded from Hugging Face safetensors, as a reward model.

transformers 5 dropped its Flax models, so the forward pass is written here (RMSNorm, rotary
positions, grouped-query causal attention, SwiGLU MLP) to match `transformers`' PyTorch
LlamaModel on the same weights (a test checks it). The reward is a scalar head on the hidden
state of each sequence's last real token.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class LlamaSpec:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LlamaSpec:
        config = json.loads((Path(directory) / "config.json").read_text())
        rope = config.get("rope_parameters") or {}
        return cls(config["vocab_size"], config["hidden_size"], config["intermediate_size"],
                   config["num_hidden_layers"], config["num_attention_heads"],
                   config.get("num_key_value_heads", config["num_attention_heads"]),
                   config.get("rms_norm_eps", 1e-6),
                   rope.get("rope_theta", config.get("rope_theta", 10000.0)))


class RMSNorm(nn.Module):
    eps: float

    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", nn.initializers.ones, (x.shape[-1],))
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 ** 2, axis=-1, keepdims=True) + self.eps)
        return (weight * normed).astype(x.dtype)


def rotate(x, positions, theta: float):
    """Rotary position embedding, as HF applies it (halves, not interleaved pairs)."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / (theta ** (jnp.arange(0, half, dtype=jnp.float32) / half))
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # (batch, seq, half)
    cos = jnp.concatenate([jnp.cos(angles)] * 2, axis=-1)[:, :, None, :]
    sin = jnp.concatenate([jnp.sin(angles)] * 2, axis=-1)[:, :, None, :]
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * cos + rotated * sin).astype(x.dtype)


class Attention(nn.Module):
    spec: LlamaSpec
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, positions, mask):
        s, b, t = self.spec, x.shape[0], x.shape[1]
        dense = lambda features, name: nn.Dense(features, use_bias=False, dtype=self.dtype, name=name)
        q = dense(s.num_attention_heads * s.head_dim, "q_proj")(x).reshape(b, t, s.num_attention_heads, s.head_dim)
        k = dense(s.num_key_value_heads * s.head_dim, "k_proj")(x).reshape(b, t, s.num_key_value_heads, s.head_dim)
        v = dense(s.num_key_value_heads * s.head_dim, "v_proj")(x).reshape(b, t, s.num_key_value_heads, s.head_dim)
        q, k = rotate(q, positions, s.rope_theta), rotate(k, positions, s.rope_theta)
        repeats = s.num_attention_heads // s.num_key_value_heads
        k, v = jnp.repeat(k, repeats, axis=2), jnp.repeat(v, repeats, axis=2)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / np.sqrt(s.head_dim)
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, -1)
        return dense(s.hidden_size, "o_proj")(out)


class MLP(nn.Module):
    spec: LlamaSpec
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        dense = lambda features, name: nn.Dense(features, use_bias=False, dtype=self.dtype, name=name)
        gate = dense(self.spec.intermediate_size, "gate_proj")(x)
        up = dense(self.spec.intermediate_size, "up_proj")(x)
        return dense(self.spec.hidden_size, "down_proj")(nn.silu(gate) * up)


class DecoderLayer(nn.Module):
    spec: LlamaSpec
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, positions, mask):
        x = x + Attention(self.spec, self.dtype, name="self_attn")(
            RMSNorm(self.spec.rms_norm_eps, name="input_layernorm")(x), positions, mask)
        return x + MLP(self.spec, self.dtype, name="mlp")(
            RMSNorm(self.spec.rms_norm_eps, name="post_attention_layernorm")(x))


class LlamaModel(nn.Module):
    spec: LlamaSpec
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, attention_mask):
        """Last hidden states (batch, seq, hidden); padding is on the right."""
        positions = jnp.cumsum(attention_mask, axis=-1) - 1
        causal = jnp.tril(jnp.ones((input_ids.shape[1],) * 2, dtype=bool))
        mask = causal[None, None] & attention_mask[:, None, None, :].astype(bool)
        x = nn.Embed(self.spec.vocab_size, self.spec.hidden_size, dtype=self.dtype,
                     name="embed_tokens")(input_ids)
        for i in range(self.spec.num_hidden_layers):
            x = DecoderLayer(self.spec, self.dtype, name=f"layers_{i}")(x, positions, mask)
        return RMSNorm(self.spec.rms_norm_eps, name="norm")(x)


class LlamaRewardModel(nn.Module):
    spec: LlamaSpec
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, attention_mask):
        hidden = LlamaModel(self.spec, self.dtype, name="model")(input_ids, attention_mask)
        last = jnp.maximum(attention_mask.sum(axis=-1) - 1, 0)
        final = hidden[jnp.arange(hidden.shape[0]), last]
        return nn.Dense(1, use_bias=False, dtype=jnp.float32, name="score")(final)[:, 0]


def _kernel(tensors: dict, prefix: str, name: str) -> dict:
    """A Dense kernel from a PyTorch Linear weight (out, in): transposed."""
    return {"kernel": tensors[prefix + name + ".weight"].T}


def params_from_safetensors(directory: str | Path, spec: LlamaSpec, rng: jax.Array) -> dict:
    """The model's weights in Flax layout (Dense kernels transposed); a fresh reward head."""
    from safetensors.numpy import load_file

    tensors = {}
    for shard in sorted(Path(directory).glob("*.safetensors")):
        # A causal-LM checkpoint prefixes the decoder's weights with "model."; a bare one not.
        tensors.update({k.removeprefix("model."): v for k, v in load_file(shard).items()})
    model = {"embed_tokens": {"embedding": tensors["embed_tokens.weight"]},
             "norm": {"weight": tensors["norm.weight"]}}
    for i in range(spec.num_hidden_layers):
        prefix = f"layers.{i}."
        kernel = functools.partial(_kernel, tensors, prefix)
        model[f"layers_{i}"] = {
            "input_layernorm": {"weight": tensors[prefix + "input_layernorm.weight"]},
            "post_attention_layernorm": {"weight": tensors[prefix + "post_attention_layernorm.weight"]},
            "self_attn": {n: kernel(f"self_attn.{n}") for n in ("q_proj", "k_proj", "v_proj", "o_proj")},
            "mlp": {n: kernel(f"mlp.{n}") for n in ("gate_proj", "up_proj", "down_proj")},
        }
    score = nn.initializers.normal(stddev=1.0 / np.sqrt(spec.hidden_size))(rng, (spec.hidden_size, 1))
    return {"params": {"model": model, "score": {"kernel": np.asarray(score)}}}


def params_to_hf_tensors(params: dict, spec: LlamaSpec) -> dict[str, np.ndarray]:
    """The reward model's weights under LlamaForSequenceClassification's names (the inverse of
    params_from_safetensors, plus the head as `score.weight`)."""
    model = params["params"]["model"]
    tensors = {"model.embed_tokens.weight": model["embed_tokens"]["embedding"],
               "model.norm.weight": model["norm"]["weight"],
               "score.weight": params["params"]["score"]["kernel"].T}
    for i in range(spec.num_hidden_layers):
        layer, prefix = model[f"layers_{i}"], f"model.layers.{i}."
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors[f"{prefix}{norm}.weight"] = layer[norm]["weight"]
        for block, names in (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
                             ("mlp", ("gate_proj", "up_proj", "down_proj"))):
            for name in names:
                tensors[f"{prefix}{block}.{name}.weight"] = layer[block][name]["kernel"].T
    return {name: np.ascontiguousarray(np.asarray(value, dtype=np.float32)) for name, value in tensors.items()}
