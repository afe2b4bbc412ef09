"""The instance schema every service shares: one preference pair with labels per source."""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass, field

import numpy as np

PREFERENCES = ("A", "B", "tie")
# Names of stored things (PPMs and their versions, experiments, runs): safe as file names.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """JSON can carry a lone UTF-16 surrogate (the escape \\ud800) that Python decodes and no
    encoder takes back (protobuf, UTF-8 files): text that is not valid Unicode."""
    return not text.isascii() and _SURROGATE.search(text) is not None

# MultiPref's five-way vocabulary collapses to the three preferences a Bradley-Terry RM uses.
MULTIPREF_LABELS = {
    "A-is-clearly-better": "A",
    "A-is-slightly-better": "A",
    "Tie": "tie",
    "B-is-slightly-better": "B",
    "B-is-clearly-better": "B",
}


def normalize_label(value: str) -> str | None:
    """Maps any supported label spelling to "A", "B" or "tie"; None if it is not one."""
    text = str(value).strip()
    if text in MULTIPREF_LABELS:
        return MULTIPREF_LABELS[text]
    lowered = text.lower()
    for canonical in PREFERENCES:
        if lowered == canonical.lower():
            return canonical
    return None


STABLE_ID_SEPARATOR, STABLE_ID_LENGTH = "\x1f", 16


def stable_id(*parts: str) -> str:
    """A content-derived id: the same pair always gets the same id, on every machine."""
    digest = hashlib.sha256(STABLE_ID_SEPARATOR.join(parts).encode("utf-8")).hexdigest()
    return digest[:STABLE_ID_LENGTH]


@dataclass(frozen=True)
class Instance:
    """A prompt, two responses, and labels keyed by annotator source ("human", "ai", ...)."""

    id: str
    prompt: str
    response_a: str
    response_b: str
    labels: dict[str, str] = field(default_factory=dict)
    judge_confidence: float | None = None
    costs: dict[str, float] = field(default_factory=dict)  # per paid source, when known
    subset: str = ""  # an evaluation set's subset (RewardBench style), "" elsewhere
    # Set when the text was dropped after reading (a large file routed by content key): what
    # content_key() was before.
    text_key: str = ""

    def content_key(self) -> str:
        """Hash of the text alone (not the labels): the key features are cached under."""
        return self.text_key or stable_id(self.prompt, self.response_a, self.response_b)

    def without_text(self) -> Instance:
        """The instance with its text dropped and its content key kept (a tenth of the memory
        for a typical conversation)."""
        # (not dataclasses.replace: a tenth of the time of reading a million rows went to it)
        return Instance(self.id, "", "", "", self.labels, self.judge_confidence, self.costs, self.subset,
                        self.content_key())


def judge_confidences(instances: list[Instance]) -> np.ndarray:
    """Each pair's judge confidence, NaN where it has none."""
    return np.array([math.nan if i.judge_confidence is None else i.judge_confidence for i in instances],
                    dtype=np.float64)


@dataclass
class Dataset:
    """Validated instances from one source, and how many bad rows were dropped on request."""

    instances: list[Instance]
    source: str = ""
    n_skipped: int = 0
    format: str = ""
    notes: list[str] = field(default_factory=list)  # values read with a coercion, by row

    def __len__(self) -> int:
        return len(self.instances)

    @functools.cached_property
    def judge_confidences(self) -> np.ndarray:
        """Every pair's judge confidence, NaN where none (computed once: a million pairs)."""
        return judge_confidences(self.instances)

    @property
    def ids(self) -> list[str]:
        return [instance.id for instance in self.instances]


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a server reads itself: a file and how to read it (see `ingest.read_dataset`)."""

    path: str
    format: str = "auto"
    columns: tuple[tuple[str, str], ...] = ()  # (field, column in the file) pairs
    skip_bad_rows: bool = False
