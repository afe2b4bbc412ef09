"""The feature catalogue: every binary feature of the paper, in the column order of the matrix.

Textual features are numeric values in [0, 1] (length features become percentile ranks within
the dataset first), each split into three equal bins. Descriptive tags from a tagging LM are one
binary feature per value (closed sets), or one "present" feature (open sets). The names and
value sets follow the paper's code (allenai/hybrid-preferences): 27 textual + 63 descriptive.
Beyond the paper, the AI judge's confidence in its own label (from the data: order consistency,
agreement of other judges; see `hyper.data.label_sources`) is binned the same way, so the PPM can
learn where the judge errs: 3 judge features, 93 in all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

N_BINS = 3
BIN_EDGES = (0.0, 0.33, 0.67, 1.0)

# The paper's nine textual dimensions; the four length ones are percentile-ranked first.
TEXTUAL_DIMENSIONS = (
    "bertscore",
    "bertscore_length",
    "cosine_sim",
    "entity_sim",
    "len_longer",
    "len_shorter",
    "prompt_len",
    "rouge",
    "token_len_diff",
)
LENGTH_DIMENSIONS = ("len_longer", "len_shorter", "prompt_len", "token_len_diff")

SUBJECTS = (
    "Anthropology", "History", "Linguistics and language", "Philosophy", "Religion",
    "Economics", "Geography", "Political science", "Psychology", "Sociology", "Biology",
    "Chemistry", "Earth sciences", "Physics", "Space sciences", "Computer sciences", "Logic",
    "System science", "Agriculture", "Architecture and design", "Business", "Divinity",
    "Education", "Chemical engineering", "Civil engineering", "Electrical engineering",
    "Materials science and engineering", "Mechanical engineering",
    "Environmental studies and forestry", "Family and consumer science",
    "Human physical performance and recreation", "Journalism",
    "Media studies and communication", "Law", "Library and museum studies",
    "Medicine and health", "Military sciences", "Social work", "Transportation",
    "Culinary arts", "Literature", "Performing arts", "Visual arts", "Mathematics",
    "Public administration", "Others",
)

# Closed-set dimensions: one binary feature per value.
DESCRIPTIVE_VALUES: dict[str, tuple[str, ...]] = {
    "subject_of_expertise": SUBJECTS,
    "expertise_level": ("general public", "basic domain knowledge", "expert domain knowledge"),
    "languages": ("English",),
    "open_endedness": ("no", "low", "moderate", "high"),
    "safety_concern": ("safe", "low", "moderate", "high"),
    "complexity_of_intents": ("simple", "moderate", "complex"),
}
# Open-set dimensions: the value set is unbounded, so the feature is whether any value exists.
OPEN_SET_DIMENSIONS = ("type_of_in_context_material", "format_constraints")
PRESENT = "present"

# Numeric values in [0, 1] the dataset itself provides per instance (not cached by content).
JUDGE_DIMENSIONS = ("judge_confidence",)

# The tagger computes every textual dimension; descriptive tags come from a tagging LM.
COMPUTED_TEXTUAL = TEXTUAL_DIMENSIONS
TAGGER_ALGORITHM_VERSION = "tagger-v3"


@dataclass(frozen=True)
class Feature:
    name: str
    group: str  # "textual", "descriptive" or "judge"
    dimension: str
    value: str  # the bin ("0.33-0.67") or the tag value
    computed: bool


def bin_label(index: int) -> str:
    return f"{BIN_EDGES[index]:.2f}-{BIN_EDGES[index + 1]:.2f}"


def _textual_features() -> list[Feature]:
    return [
        Feature(f"{dim}::{bin_label(i)}", "textual", dim, bin_label(i), dim in COMPUTED_TEXTUAL)
        for dim in TEXTUAL_DIMENSIONS
        for i in range(N_BINS)
    ]


def _descriptive_features() -> list[Feature]:
    closed = [
        Feature(f"{dim}::{value}", "descriptive", dim, value, True)
        for dim, values in DESCRIPTIVE_VALUES.items()
        for value in values
    ]
    open_set = [
        Feature(f"{dim}::{PRESENT}", "descriptive", dim, PRESENT, True)
        for dim in OPEN_SET_DIMENSIONS
    ]
    return closed + open_set


def _judge_features() -> list[Feature]:
    return [Feature(f"{dim}::{bin_label(i)}", "judge", dim, bin_label(i), True)
            for dim in JUDGE_DIMENSIONS for i in range(N_BINS)]


CATALOGUE: tuple[Feature, ...] = tuple(_textual_features() + _descriptive_features() + _judge_features())
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in CATALOGUE)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}


def feature_set_version(descriptive_backend: str = "", models: tuple[str, ...] = ()) -> str:
    """Changes whenever the catalogue or the way features are computed changes: the
    descriptive-tag backend (its tag set) and the models behind the values (each named with its
    runtime and precision) included."""
    text = "\n".join([TAGGER_ALGORITHM_VERSION, descriptive_backend, *models]
                     + [f"{f.name}:{f.computed}" for f in CATALOGUE])
    return f"{TAGGER_ALGORITHM_VERSION}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
