"""Frozen embeddings of preference pairs, as the proxy heads see them."""

from __future__ import annotations

import numpy as np

from hyper.embeddings import SentenceEmbedder
from hyper.rm_trainer.proxy import pair_features
from hyper.schema import Instance

# The embedding model reads at most 256 tokens; the end of a long conversation matters most.
PROMPT_TAIL_CHARS = 1200


def encode_pairs(instances: list[Instance], embedder: SentenceEmbedder,
                 show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(phi_a, phi_b), each (n, 2 * dim)."""
    n = len(instances)
    texts = ([i.prompt[-PROMPT_TAIL_CHARS:] for i in instances]
             + [i.response_a for i in instances] + [i.response_b for i in instances])
    embeddings = embedder.encode(texts, show_progress=show_progress)
    prompts, a, b = embeddings[:n], embeddings[n:2 * n], embeddings[2 * n:]
    return pair_features(prompts, a), pair_features(prompts, b)
