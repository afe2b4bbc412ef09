"""AI preference labels for unlabelled pairs (the tagger's Annotate).

The CPU backend is the reward-model judge that `hyper judge train` saves: a Bradley-Terry
head on the same frozen sentence embeddings the tagger computes. Its consistency is measured
the way an LM judge's is, by asking again with A and B swapped (for a reward model the
swapped margin is the exact negative, so it is 1 unless the embeddings are degenerate).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from hyper.embeddings import SentenceEmbedder
from hyper.errors import HyperError
from hyper.judge import SavedJudge, labels_from_margins, load_judge
from hyper.pairs import encode_pairs
from hyper.schema import Instance


class NoJudge(HyperError):
    pass


class Judge(Protocol):
    """An AI judge behind Annotate: the saved reward-model judge, or an LM judge (vLLM)."""

    name: str

    def annotate(self, instances: list[Instance]) -> list[Judgement]: ...


@dataclass
class Judgement:
    label: str
    confidence: float
    consistency: float


class RewardModelJudge:
    name = "reward-model"

    def __init__(self, embedder: SentenceEmbedder, path: Path):
        self.embedder = embedder
        self.path = Path(path)
        self._loaded: tuple[float, SavedJudge] | None = None
        self._lock = threading.Lock()

    def _judge(self) -> SavedJudge:
        """The saved judge, reloaded when its file changes (a judge trained after start-up)."""
        if not self.path.is_file():
            raise NoJudge(f"no AI judge at {self.path}: train one with `hyper judge train DATA`")
        mtime = self.path.stat().st_mtime
        with self._lock:
            if self._loaded is None or self._loaded[0] != mtime:
                judge = load_judge(self.path)
                if judge.embedding_model != self.embedder.model_name:
                    raise NoJudge(f"the judge at {self.path} was trained on embeddings of "
                                  f"{judge.embedding_model!r}, the tagger uses {self.embedder.model_name!r}")
                self._loaded = (mtime, judge)
            return self._loaded[1]

    def annotate(self, instances: list[Instance]) -> list[Judgement]:
        judge = self._judge()
        phi_a, phi_b = encode_pairs(instances, self.embedder)
        margins = judge.margins(phi_a, phi_b)
        swapped = judge.margins(phi_b, phi_a)
        labels, confidence = labels_from_margins(margins)
        agrees = (np.sign(-swapped) == np.sign(margins)).astype(np.float64)
        return [Judgement(label, float(c), float(a)) for label, c, a in zip(labels, confidence, agrees, strict=True)]
