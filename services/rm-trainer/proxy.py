"""Proxy reward models: a small Flax head on frozen sentence embeddings, Bradley-Terry loss.

Many candidate mixes share the same pairs and differ only in which label each pair carries,
so one compiled program trains a head per candidate at once (`jax.vmap` over candidates).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

PREFERENCE_SIGN = {"A": 1.0, "B": -1.0, "tie": 0.0}


@dataclass(frozen=True)
class ProxyConfig:
    hidden: int = 0  # 0 = a linear head
    steps: int = 150
    learning_rate: float = 0.02
    weight_decay: float = 1e-3
    seed: int = 0


class RewardHead(nn.Module):
    hidden: int = 0

    @nn.compact
    def __call__(self, phi):
        x = phi
        if self.hidden:
            x = nn.gelu(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)[..., 0]


def pair_features(prompt_embeddings: np.ndarray, response_embeddings: np.ndarray) -> np.ndarray:
    """phi(x, y) = [e_y, e_x * e_y]: the response, and how it relates to the prompt."""
    return np.concatenate([response_embeddings, prompt_embeddings * response_embeddings], axis=1)


def targets_and_weights(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """+1 (A preferred) / -1 (B preferred); a tie gives no Bradley-Terry pair (weight 0)."""
    signs = np.array([PREFERENCE_SIGN[label] for label in labels], dtype=np.float32)
    return signs, (signs != 0).astype(np.float32)


def bradley_terry_loss(params, head: RewardHead, phi_a, phi_b, targets, weights):
    margin = head.apply(params, phi_a) - head.apply(params, phi_b)
    losses = jax.nn.softplus(-targets * margin)  # -log sigmoid(target * margin)
    return jnp.sum(weights * losses) / jnp.maximum(jnp.sum(weights), 1.0)


@functools.lru_cache(maxsize=8)
def _compiled_trainer(config: ProxyConfig):
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
                config: ProxyConfig):
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


def predict_margins(params, phi_a: np.ndarray, phi_b: np.ndarray, config: ProxyConfig) -> np.ndarray:
    """r(A) - r(B) for every stacked head and pair: (n_candidates, n_pairs)."""
    return np.asarray(_compiled_margins(config.hidden)(params, jnp.asarray(phi_a), jnp.asarray(phi_b)))


def pairwise_accuracy(margins: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Share of non-tie pairs whose preferred response gets the higher reward, per head."""
    decided = targets != 0
    correct = (np.sign(margins) == targets) & decided
    return correct.sum(axis=-1) / np.maximum(decided.sum(axis=-1), 1)
