"""Proxy reward models: a small Flax head on frozen sentence embeddings, Bradley-Terry loss.

Many candidate mixes share the same pairs and differ only in which label each pair carries,
so one compiled program trains a head per candidate at once (`jax.vmap` over candidates).
Shared by the rm-trainer Job (a head per mix), the judge trainer (a head on human labels)
and the benchmarks; the tagger applies saved heads with NumPy (`hyper.judges.saved_judge`), without JAX.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hyper.method.run_spec import ProxySpec


class RewardHead(nn.Module):
    hidden: int = 0

    @nn.compact
    def __call__(self, phi):
        x = phi
        if self.hidden:
            x = nn.gelu(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)[..., 0]


def bradley_terry_loss(params, head: RewardHead, phi_a, phi_b, targets, weights):
    margin = head.apply(params, phi_a) - head.apply(params, phi_b)
    losses = jax.nn.softplus(-targets * margin)  # -log sigmoid(target * margin)
    return jnp.sum(weights * losses) / jnp.maximum(jnp.sum(weights), 1.0)


@functools.lru_cache(maxsize=8)
def _compiled_trainer(config: ProxySpec):
    head = RewardHead(config.hidden)
    optimizer = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    grad_fn = jax.value_and_grad(bradley_terry_loss)

    def train_one(key, phi_a, phi_b, targets, weights):
        params = head.init(key, phi_a[:1])

        def train_step(state, _):
            params, opt_state = state
            loss, grads = grad_fn(params, head, phi_a, phi_b, targets, weights)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(train_step, (params, optimizer.init(params)), None,
                                           length=config.steps)
        return params, losses[-1]

    return jax.jit(jax.vmap(train_one, in_axes=(0, None, None, 0, 0)))


def train_heads(phi_a: np.ndarray, phi_b: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                config: ProxySpec):
    """One head per row of `targets`/`weights` (n_candidates, n_pairs); params stacked on axis 0."""
    keys = jax.random.split(jax.random.key(config.seed), targets.shape[0])
    return _compiled_trainer(config)(keys, jnp.asarray(phi_a), jnp.asarray(phi_b),
                                     jnp.asarray(targets), jnp.asarray(weights))


@functools.lru_cache(maxsize=8)
def _compiled_margins(hidden: int):
    head = RewardHead(hidden)

    def margins(params, phi_a, phi_b):
        return head.apply(params, phi_a) - head.apply(params, phi_b)

    return jax.jit(jax.vmap(margins, in_axes=(0, None, None)))


def predict_margins(params, phi_a: np.ndarray, phi_b: np.ndarray, config: ProxySpec) -> np.ndarray:
    """r(A) - r(B) for every stacked head and pair: (n_candidates, n_pairs)."""
    return np.asarray(_compiled_margins(config.hidden)(params, jnp.asarray(phi_a), jnp.asarray(phi_b)))


def pairwise_accuracy(margins: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Share of non-tie pairs whose preferred response gets the higher reward, per head."""
    decided = targets != 0
    correct = (np.sign(margins) == targets) & decided
    return correct.sum(axis=-1) / np.maximum(decided.sum(axis=-1), 1)
