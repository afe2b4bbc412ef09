"""Textual features of a preference pair: similarity of the two responses and token lengths."""

from __future__ import annotations

import numpy as np
from rouge_score import rouge_scorer

from hyper.catalogue import COMPUTED_TEXTUAL
from hyper.embeddings import SentenceEmbedder
from hyper.schema import Instance

# Order of the raw values as cached; the catalogue's names for them.
RAW_DIMENSIONS = COMPUTED_TEXTUAL


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def rouge_l(responses_a: list[str], responses_b: list[str]) -> np.ndarray:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array([scorer.score(b, a)["rougeL"].fmeasure
                     for a, b in zip(responses_a, responses_b)])


def token_counts(tokenizer, texts: list[str]) -> np.ndarray:
    encoded = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    return np.array([len(ids) for ids in encoded], dtype=np.float64)


def raw_textual_values(instances: list[Instance], embedder: SentenceEmbedder) -> np.ndarray:
    """(n, len(RAW_DIMENSIONS)) raw values; lengths are token counts, not yet ranked."""
    responses_a = [i.response_a for i in instances]
    responses_b = [i.response_b for i in instances]
    embeddings = embedder.encode(responses_a + responses_b)
    cosine = rowwise_cosine(embeddings[: len(instances)], embeddings[len(instances):])
    len_a = token_counts(embedder.tokenizer, responses_a)
    len_b = token_counts(embedder.tokenizer, responses_b)
    columns = {
        "cosine_sim": cosine,
        "len_longer": np.maximum(len_a, len_b),
        "len_shorter": np.minimum(len_a, len_b),
        "prompt_len": token_counts(embedder.tokenizer, [i.prompt for i in instances]),
        "rouge": rouge_l(responses_a, responses_b),
        "token_len_diff": np.abs(len_a - len_b),
    }
    return np.stack([columns[name] for name in RAW_DIMENSIONS], axis=1)
