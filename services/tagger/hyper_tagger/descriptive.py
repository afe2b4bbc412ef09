"""Descriptive tags of a prompt: subject, expertise, languages, open-endedness, safety,
complexity, in-context material, format constraints (the paper's eight dimensions).

Backends share one interface: `tag(prompts) -> (n, len(DESCRIPTIVE_FEATURES))` 0/1 bits in
catalogue order, and a `name` that enters the feature-set version (different backends give
different tags, so their features must not share a cache entry). The CPU backend here tags by
nearest prototypes: a scalar dimension takes the value whose hand-written example requests
(tag_prototypes.json) the prompt's sentence embedding is closest to, subjects are the fields
whose listed topics are closest (on the fast feature set's static vectors, the scalar dimensions
are scored by centred centroids: `CentredCentroidTagger`); languages and the two open sets come
from what the text itself shows. How well each dimension agrees with ground truth is measured by `make bench-tags`
(docs/tagger.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Protocol

import numpy as np

from hyper.core.catalogue import CATALOGUE, DESCRIPTIVE_VALUES, FEATURE_INDEX, OPEN_SET_DIMENSIONS, PRESENT
from hyper.method.embeddings import SentenceEmbedder, unit_rows

DESCRIPTIVE_FEATURES = tuple(f.name for f in CATALOGUE if f.group == "descriptive")
_COLUMN = {name: j for j, name in enumerate(DESCRIPTIVE_FEATURES)}
MAX_SUBJECTS = 3

PROTOTYPES_FILE = Path(__file__).with_name("tag_prototypes.json")
PROTOTYPES_HASH = hashlib.sha256(PROTOTYPES_FILE.read_bytes()).hexdigest()[:8]
SCALAR_DIMENSIONS = ("expertise_level", "open_endedness", "safety_concern", "complexity_of_intents")
TOP_K = 3  # a value's score: the mean similarity of its 3 closest prototypes
SUBJECT_MARGIN = 0.03  # further subjects must be this close to the best one
SUBJECT_FLOOR = 0.15  # below this similarity to every subject, the subject is "Others"

IN_CONTEXT_MATERIAL = re.compile(r"```|https?://|\n\s*\|.*\|\s*\n|\n\s*[-*]\s+\S|\"[^\"]{80,}\"")
FORMAT_CONSTRAINT = re.compile(
    r"\b(in|under|at most|no more than|exactly|within)\s+\d+\s+(words?|sentences?|paragraphs?|"
    r"lines?|bullet points?|characters?)\b|\b(json|yaml|csv|markdown|table|bullet points?|"
    r"numbered list|haiku|poem|essay|one word)\b", re.IGNORECASE)
TURN = re.compile(r"(?:^|\n)\s*(Human|Assistant):")


class DescriptiveBackend(Protocol):
    name: str

    def tag(self, prompts: list[str]) -> np.ndarray: ...


def request_text(prompt: str, max_chars: int = 1000) -> str:
    """What a prompt asks: in a transcript, the human turns (the assistant's replies dropped),
    the latest last; else the prompt itself. The end is kept when it is long, where the request
    usually is (the sentence model reads 256 tokens)."""
    parts = TURN.split(prompt)
    if len(parts) == 1:
        return prompt.strip()[-max_chars:]
    human = [text.strip() for role, text in zip(parts[1::2], parts[2::2], strict=True) if role == "Human"]
    return "\n".join(t for t in human if t)[-max_chars:] or prompt.strip()[-max_chars:]


def is_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) / len(letters) >= 0.9


def set_values(bits: np.ndarray, row: int, dimension: str, values: list[str]) -> None:
    for value in values:
        bits[row, _COLUMN[f"{dimension}::{value}"]] = 1


def top_k_mean(similarity: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """(n, m) similarities to m prototypes -> (n,) mean of each row's k largest."""
    k = min(k, similarity.shape[1])
    return np.sort(similarity, axis=1)[:, -k:].mean(axis=1)


class PrototypeTagger:
    """The CPU backend: nearest hand-written prototypes in sentence-embedding space."""

    # The tag set's version: the method and the prototypes' exact content.
    name = f"prototypes-v2-{PROTOTYPES_HASH}"

    def __init__(self, embedder: SentenceEmbedder):
        prototypes = json.loads(PROTOTYPES_FILE.read_text())
        self.embedder = embedder
        self.scalar = {dim: {value: embedder.encode(prototypes[dim][value]) for value in DESCRIPTIVE_VALUES[dim]}
                       for dim in SCALAR_DIMENSIONS}
        self.subject_names = [s for s in DESCRIPTIVE_VALUES["subject_of_expertise"] if s != "Others"]
        self.subjects = [embedder.encode(prototypes["subjects"][s]) for s in self.subject_names]

    def value_scores(self, embeddings: np.ndarray, dimension: str) -> np.ndarray:
        """(n, number of values) scores of each value of a scalar dimension, catalogue order."""
        return np.stack([top_k_mean(embeddings @ vectors.T) for vectors in self.scalar[dimension].values()],
                        axis=1)

    def concern_scores(self, prompts: list[str]) -> np.ndarray:
        """How much closer each prompt is to any concern than to safe requests: the continuous
        score behind `safety_concern` (what its AUC is measured on)."""
        scores = self.value_scores(self.embed(prompts), "safety_concern")
        return scores[:, 1:].max(axis=1) - scores[:, 0]

    def embed(self, prompts: list[str]) -> np.ndarray:
        return self.embedder.encode([request_text(p) for p in prompts])

    def subject_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, subjects) similarity to each subject's closest prototype (its topics or a request)."""
        return np.stack([(embeddings @ vectors.T).max(axis=1) for vectors in self.subjects], axis=1)

    def _subjects(self, similarity: np.ndarray) -> list[str]:
        order = np.argsort(-similarity)[:MAX_SUBJECTS]
        close = [self.subject_names[k] for k in order if similarity[k] >= similarity[order[0]] - SUBJECT_MARGIN]
        return close if similarity[order[0]] >= SUBJECT_FLOOR else ["Others"]

    def tag(self, prompts: list[str]) -> np.ndarray:
        texts = [request_text(p) for p in prompts]
        embeddings = self.embedder.encode(texts)
        bits = np.zeros((len(prompts), len(DESCRIPTIVE_FEATURES)), dtype=np.uint8)
        for dim in SCALAR_DIMENSIONS:
            values = DESCRIPTIVE_VALUES[dim]
            for row, k in enumerate(np.argmax(self.value_scores(embeddings, dim), axis=1)):
                set_values(bits, row, dim, [values[k]])
        subject_similarity = self.subject_scores(embeddings)
        for row, text in enumerate(texts):
            set_values(bits, row, "subject_of_expertise", self._subjects(subject_similarity[row]))
            set_values(bits, row, "languages", ["English"] if is_english(text) else [])
            present = {"type_of_in_context_material": IN_CONTEXT_MATERIAL.search(prompts[row]),
                       "format_constraints": FORMAT_CONSTRAINT.search(text)}
            for dim in OPEN_SET_DIMENSIONS:
                set_values(bits, row, dim, [PRESENT] if present[dim] else [])
        return bits


class CentredCentroidTagger(PrototypeTagger):
    """The CPU backend on static token vectors (HYPER_EMBEDDING_RUNTIME=static): a mean of static
    token vectors carries a large component every text shares (its frequent words), which
    swamps the few directions a request's intent moves, and one prototype's vector is noisy. So
    a scalar dimension's vectors are centred on the mean of its prototypes and each value scored
    by the cosine to its prototypes' centroid. Chosen on the development prompts only (red-team
    against benign AUC 0.80 nearest-3 uncentred, 0.90 centred, 0.94 centred centroids);
    subjects, languages and the two open sets are tagged as by `PrototypeTagger`."""

    name = f"prototype-centroids-v1-{PROTOTYPES_HASH}"

    def __init__(self, embedder: SentenceEmbedder):
        super().__init__(embedder)
        self.centre = {dim: np.vstack(list(values.values())).mean(axis=0) for dim, values in self.scalar.items()}
        self.centroids = {dim: unit_rows(np.stack([unit_rows(vectors - self.centre[dim]).mean(axis=0)
                                                   for vectors in values.values()]))
                          for dim, values in self.scalar.items()}

    def value_scores(self, embeddings: np.ndarray, dimension: str) -> np.ndarray:
        return unit_rows(embeddings - self.centre[dimension]) @ self.centroids[dimension].T


def prototype_tagger(embedder: SentenceEmbedder) -> PrototypeTagger:
    """The CPU backend suited to the embedder's vectors (the transformer's or static ones)."""
    return CentredCentroidTagger(embedder) if embedder.static is not None else PrototypeTagger(embedder)


def descriptive_columns() -> np.ndarray:
    """Where the descriptive features sit in the full catalogue matrix."""
    return np.array([FEATURE_INDEX[name] for name in DESCRIPTIVE_FEATURES])


@functools.cache
def descriptive_span() -> slice:
    """The same columns as one slice (the catalogue lists the descriptive features in one run):
    a million rows are written as a block, where scattered columns took half a second."""
    columns = descriptive_columns()
    if not np.array_equal(columns, np.arange(columns[0], columns[-1] + 1)):
        raise RuntimeError("the catalogue's descriptive features are not one run of columns")
    return slice(int(columns[0]), int(columns[-1]) + 1)
