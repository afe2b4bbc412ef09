"""Descriptive tags of a prompt: subject, expertise, languages, open-endedness, safety,
complexity, in-context material, format constraints (the paper's eight dimensions).

Backends share one interface: `tag(prompts) -> (n, len(DESCRIPTIVE_FEATURES))` 0/1 bits in
catalogue order, and a `name` that enters the feature-set version (different backends give
different tags, so their features must not share a cache entry). The CPU backend here tags
zero-shot: a prompt takes the value whose description its sentence embedding is closest to;
languages and the two open sets come from what the text itself shows. Real, if weaker, tags
than a tagging LM's.
"""

from __future__ import annotations

import re
from typing import Protocol

import numpy as np

from hyper.core.catalogue import CATALOGUE, DESCRIPTIVE_VALUES, FEATURE_INDEX, OPEN_SET_DIMENSIONS, PRESENT
from hyper.method.embeddings import SentenceEmbedder

DESCRIPTIVE_FEATURES = tuple(f.name for f in CATALOGUE if f.group == "descriptive")
_COLUMN = {name: j for j, name in enumerate(DESCRIPTIVE_FEATURES)}
MAX_SUBJECTS = 3

VALUE_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "expertise_level": {
        "general public": "an everyday question that anyone could answer",
        "basic domain knowledge": "a question that needs some background knowledge of a field",
        "expert domain knowledge": "a specialised technical question only an expert could answer",
    },
    "open_endedness": {
        "no": "a question with exactly one correct factual answer",
        "low": "a question with a few acceptable answers",
        "moderate": "an open question that invites discussion and opinions",
        "high": "a creative, open-ended request with countless possible answers",
    },
    "safety_concern": {
        "safe": "a harmless, ordinary and friendly request",
        "low": "a slightly sensitive or rude request",
        "moderate": "a request that could lead to harm, deception or offence",
        "high": "a request for help with violence, crime, weapons or other serious harm",
    },
    "complexity_of_intents": {
        "simple": "a single short and simple request",
        "moderate": "a request with a couple of parts",
        "complex": "a complex request with many steps, parts or constraints",
    },
}
SCALAR_DIMENSIONS = tuple(VALUE_DESCRIPTIONS)
SUBJECT_MARGIN = 0.03  # further subjects must be this close to the best one

IN_CONTEXT_MATERIAL = re.compile(r"```|https?://|\n\s*\|.*\|\s*\n|\n\s*[-*]\s+\S|\"[^\"]{80,}\"")
FORMAT_CONSTRAINT = re.compile(
    r"\b(in|under|at most|no more than|exactly|within)\s+\d+\s+(words?|sentences?|paragraphs?|"
    r"lines?|bullet points?|characters?)\b|\b(json|yaml|csv|markdown|table|bullet points?|"
    r"numbered list|haiku|poem|essay|one word)\b", re.IGNORECASE)
HUMAN_TURN = "Human:"


class DescriptiveBackend(Protocol):
    name: str

    def tag(self, prompts: list[str]) -> np.ndarray: ...


def focus(prompt: str, max_chars: int = 1000) -> str:
    """What a prompt asks now: its last human turn (a multi-turn transcript) or itself."""
    last = prompt.rsplit(HUMAN_TURN, 1)[-1].strip()
    return (last or prompt)[-max_chars:]


def is_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) / len(letters) >= 0.9


def set_values(bits: np.ndarray, row: int, dimension: str, values: list[str]) -> None:
    for value in values:
        bits[row, _COLUMN[f"{dimension}::{value}"]] = 1


class ZeroShotEmbeddingTagger:
    name = "zero-shot-embedding-v1"

    def __init__(self, embedder: SentenceEmbedder):
        self.embedder = embedder
        self.scalar = {dim: (list(values), embedder.encode(list(values.values())))
                       for dim, values in VALUE_DESCRIPTIONS.items()}
        subjects = [s for s in DESCRIPTIVE_VALUES["subject_of_expertise"] if s != "Others"]
        self.subjects = (subjects, embedder.encode([f"a question about {s.lower()}" for s in subjects]))

    def _subjects(self, similarity: np.ndarray) -> list[str]:
        names, _ = self.subjects
        order = np.argsort(-similarity)[:MAX_SUBJECTS]
        close = [names[k] for k in order if similarity[k] >= similarity[order[0]] - SUBJECT_MARGIN]
        return close if similarity[order[0]] > 0.2 else ["Others"]

    def tag(self, prompts: list[str]) -> np.ndarray:
        texts = [focus(p) for p in prompts]
        embeddings = self.embedder.encode(texts)
        bits = np.zeros((len(prompts), len(DESCRIPTIVE_FEATURES)), dtype=np.uint8)
        for dim, (values, described) in self.scalar.items():
            best = np.argmax(embeddings @ described.T, axis=1)
            for row, k in enumerate(best):
                set_values(bits, row, dim, [values[k]])
        subject_similarity = embeddings @ self.subjects[1].T
        for row, text in enumerate(texts):
            set_values(bits, row, "subject_of_expertise", self._subjects(subject_similarity[row]))
            set_values(bits, row, "languages", ["English"] if is_english(text) else [])
            present = {"type_of_in_context_material": IN_CONTEXT_MATERIAL.search(prompts[row]),
                       "format_constraints": FORMAT_CONSTRAINT.search(text)}
            for dim in OPEN_SET_DIMENSIONS:
                set_values(bits, row, dim, [PRESENT] if present[dim] else [])
        return bits


def descriptive_columns() -> np.ndarray:
    """Where the descriptive features sit in the full catalogue matrix."""
    return np.array([FEATURE_INDEX[name] for name in DESCRIPTIVE_FEATURES])
