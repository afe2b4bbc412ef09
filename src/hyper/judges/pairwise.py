"""AI preference labels for unlabelled pairs (the tagger's Annotate).

The CPU backend is the reward-model judge that `hyper judge train` saves: a Bradley-Terry
head on the same frozen sentence embeddings the tagger computes. Its consistency is measured
the way an LM judge's is, by asking again with A and B swapped (for a reward model the
swapped margin is the exact negative, so it is 1 unless the embeddings are degenerate).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from hyper.core.errors import HyperError
from hyper.core.schema import Instance
from hyper.judges.saved_judge import SavedJudge, labels_from_margins, load_judge
from hyper.method.embeddings import SentenceEmbedder
from hyper.method.reward_pairs import encode_pairs


class NoJudge(HyperError):
    pass


class Judge(Protocol):
    """An AI judge behind Annotate: the saved reward-model judge, an LM judge in the tagger's
    own vLLM engine, or one behind an OpenAI-compatible endpoint."""

    name: str

    def version(self) -> str:
        """Changes with anything that changes the judge's answers (verdicts are cached under it)."""

    def annotate(self, instances: list[Instance]) -> Annotation: ...


@dataclass
class Judgement:
    label: str  # "A", "B", "tie"; "" when no reply could be parsed (the pair has no AI label)
    confidence: float
    consistency: float


@dataclass
class JudgeUsage:
    """What judging cost: requests (retries included), tokens, money, replies that did not parse."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unparsed: int = 0

    def add(self, other: JudgeUsage) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Annotation:
    judgements: list[Judgement]
    usage: JudgeUsage = field(default_factory=JudgeUsage)


# The pairwise judge's instructions and message, shared by the LM judges.
JUDGE_INSTRUCTIONS = (
    "You compare two responses of an AI assistant to the same conversation. Decide which "
    "response is more helpful, honest and harmless. Answer with exactly one of: A, B, tie."
)
JUDGE_TEMPLATE = "Conversation:\n{prompt}\n\nResponse A:\n{response_a}\n\nResponse B:\n{response_b}"
MAX_CONVERSATION_CHARS = 2000
MAX_RESPONSE_CHARS = 1500


def judge_message(instance: Instance, swapped: bool, template: str = JUDGE_TEMPLATE) -> str:
    """The user message for one order of a pair, bounded so that every prompt fits the
    context: the end of a long conversation matters most."""
    first, second = ((instance.response_b, instance.response_a) if swapped
                     else (instance.response_a, instance.response_b))
    return template.format(prompt=instance.prompt[-MAX_CONVERSATION_CHARS:], response_a=first[:MAX_RESPONSE_CHARS],
                           response_b=second[:MAX_RESPONSE_CHARS])


def version_of(answers_by: dict) -> str:
    """A judge's version from what decides its answers (JSON-able values)."""
    return hashlib.sha256(json.dumps(answers_by, sort_keys=True).encode()).hexdigest()[:16]


def unswap(verdict: str | None) -> str | None:
    """A verdict given with the responses swapped, in the pair's own order."""
    return {"A": "B", "B": "A"}.get(verdict, verdict) if verdict else verdict


class RewardModelJudge:
    name = "reward-model"

    def __init__(self, embedder: SentenceEmbedder, path: Path):
        self.embedder = embedder
        self.path = Path(path)
        self._loaded: tuple[float, SavedJudge, str] | None = None
        self._lock = threading.Lock()

    def version(self) -> str:
        self._judge()
        assert self._loaded is not None
        return self._loaded[2]

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
                self._loaded = (mtime, judge, hashlib.sha256(self.path.read_bytes()).hexdigest()[:16])
            return self._loaded[1]

    def annotate(self, instances: list[Instance]) -> Annotation:
        judge = self._judge()
        phi_a, phi_b = encode_pairs(instances, self.embedder)
        margins = judge.margins(phi_a, phi_b)
        swapped = judge.margins(phi_b, phi_a)
        labels, confidence = labels_from_margins(margins)
        agrees = (np.sign(-swapped) == np.sign(margins)).astype(np.float64)
        return Annotation([Judgement(label, float(c), float(a))
                           for label, c, a in zip(labels, confidence, agrees, strict=True)])
