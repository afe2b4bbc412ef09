"""Preference pairs as the reward heads see them: frozen embeddings and Bradley-Terry targets."""

from __future__ import annotations

import numpy as np

from hyper.core.schema import Instance
from hyper.method.embeddings import SentenceEmbedder

# The embedding model reads at most 256 tokens; the end of a long conversation matters most.
PROMPT_TAIL_CHARS = 1200
PREFERENCE_SIGN = {"A": 1.0, "B": -1.0, "tie": 0.0}


def pair_features(prompt_embeddings: np.ndarray, response_embeddings: np.ndarray) -> np.ndarray:
    """phi(x, y) = [e_y, e_x * e_y]: the response, and how it relates to the prompt."""
    return np.concatenate([response_embeddings, prompt_embeddings * response_embeddings], axis=1)


def encode_pairs(instances: list[Instance], embedder: SentenceEmbedder,
                 show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(phi_a, phi_b), each (n, 2 * dim)."""
    n = len(instances)
    texts = ([i.prompt[-PROMPT_TAIL_CHARS:] for i in instances]
             + [i.response_a for i in instances] + [i.response_b for i in instances])
    embeddings = embedder.encode(texts, show_progress=show_progress)
    prompts, a, b = embeddings[:n], embeddings[n:2 * n], embeddings[2 * n:]
    return pair_features(prompts, a), pair_features(prompts, b)


def targets_and_weights(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """+1 (A preferred) / -1 (B preferred); a tie gives no Bradley-Terry pair (weight 0)."""
    signs = np.array([PREFERENCE_SIGN[label] for label in labels], dtype=np.float32)
    return signs, (signs != 0).astype(np.float32)
