"""Which label plays which part: the paid human, the AI judge, the reference that scores them,
and the judge's confidence taken from the data itself.

A dataset carries one `label_<source>` column per annotator or judge. Training a PPM, routing
and diagnosing all need the same reading of them:
- the human source is what a paid annotation would say; the AI source what the judge says;
- the reference scores both. By default it is the human source itself, except when the human
  source is one numbered annotator of several (`annotator1` among `annotator2`, `annotator3`):
  then it is the strict majority of the *other* annotators, and a row where they do not agree
  is left out of scoring (and counted);
- the judge's confidence in its own label is the share of other verdicts that agree with it:
  the same judge asked with the responses swapped (`label_<ai>_swapped`, an order-consistency
  check) and any other judges named (and their swapped twins). None where there is no verdict.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hyper.core.errors import InvalidArgument
from hyper.core.schema import Instance

SWAPPED = "_swapped"


@dataclass(frozen=True)
class LabelRoles:
    human: str = "human"
    ai: str = "ai"
    reference: tuple[str, ...] = ()  # empty: the default described above
    judges: tuple[str, ...] = ()  # other judges whose agreement is the AI label's confidence


def sources_in(instances: Sequence[Instance]) -> set[str]:
    return {source for instance in instances for source in instance.labels}


def reference_sources(roles: LabelRoles, available: set[str]) -> tuple[str, ...]:
    if roles.reference:
        return roles.reference
    numbered = re.fullmatch(r"(.*?)(\d+)", roles.human)
    if numbered:
        peer = re.compile(re.escape(numbered.group(1)) + r"\d+")
        peers = sorted(s for s in available if s != roles.human and peer.fullmatch(s))
        if peers:
            return tuple(peers)
    return (roles.human,)


def strict_majority(labels: Sequence[str | None]) -> str | None:
    """The label more than half of the sources give (a missing label counts against), or None."""
    counts = Counter(label for label in labels if label is not None)
    if not counts:
        return None
    label, votes = counts.most_common(1)[0]
    return label if votes * 2 > len(labels) else None


def confidence_verdicts(roles: LabelRoles) -> tuple[str, ...]:
    """The sources whose agreement with the AI label measures its confidence."""
    return (roles.ai + SWAPPED, *[s for judge in roles.judges for s in (judge, judge + SWAPPED)])


def judge_confidence(instance: Instance, roles: LabelRoles) -> float | None:
    label = instance.labels.get(roles.ai)
    verdicts = [instance.labels[s] for s in confidence_verdicts(roles) if s in instance.labels]
    if label is None or not verdicts:
        return None
    return sum(verdict == label for verdict in verdicts) / len(verdicts)


@dataclass
class ResolvedLabels:
    """Per instance: the human, AI and reference labels (None where absent) and the judge's
    confidence (NaN where unknown), with the counts a user should be told."""

    roles: LabelRoles
    reference_sources: tuple[str, ...]
    human: list[str | None]
    ai: list[str | None]
    reference: list[str | None]
    confidence: np.ndarray
    ai_in_data: bool  # False: no row has the AI source (a judge must label them first)
    notes: list[str] = field(default_factory=list)

    @property
    def n_missing_ai(self) -> int:
        return sum(label is None for label in self.ai) if self.ai_in_data else 0

    @property
    def n_missing_human(self) -> int:
        return sum(label is None for label in self.human)

    @property
    def n_unscored(self) -> int:
        return sum(label is None for label in self.reference)

    def scored(self) -> np.ndarray:
        return np.array([label is not None for label in self.reference])

    def correct(self, labels: Sequence[str | None]) -> np.ndarray:
        """Per instance: whether `labels` matches the reference (False where either is absent)."""
        return np.array([label is not None and label == ref for label, ref in
                         zip(labels, self.reference, strict=True)])

    def forced(self) -> np.ndarray:
        """Pairs without an AI label (when the data has AI labels): only humans can label them."""
        return np.array([self.ai_in_data and label is None for label in self.ai])

    def oracle_order(self) -> np.ndarray:
        """The ceiling's order of routing to humans: the pairs without an AI label, the scored
        pairs the judge gets wrong and the human right, the rest, and last the scored pairs a
        human would make wrong (the judge right, the human not)."""
        scored, judge_ok, human_ok = self.scored(), self.correct(self.ai), self.correct(self.human)
        rank = np.select([self.forced(), scored & ~judge_ok & human_ok, scored & judge_ok & ~human_ok], [0, 1, 3], 2)
        return np.argsort(rank, kind="stable")

    def hybrid_labels(self, to_human: np.ndarray) -> list[str | None]:
        """The hybrid set's labels: the human's where routed to humans, the judge's elsewhere."""
        return [h if paid else a for h, a, paid in zip(self.human, self.ai, to_human, strict=True)]

    def hybrid_correct(self, to_human: np.ndarray) -> np.ndarray:
        """Per scored pair: whether the hybrid set's label matches the reference; for many
        selections at once, (n_selections, n_scored)."""
        scored = self.scored()
        human, ai = self.correct(self.human)[scored], self.correct(self.ai)[scored]
        paid = np.asarray(to_human, dtype=bool)[..., scored]
        return np.where(paid, human, ai)


def check_present(role: str, sources: Sequence[str], available: set[str]) -> None:
    missing = [s for s in sources if s not in available]
    if missing:
        raise InvalidArgument(role, f"no row has label_{missing[0]}; the data's label sources are "
                                    f"{sorted(available)}")


def resolve(instances: Sequence[Instance], roles: LabelRoles) -> ResolvedLabels:
    available = sources_in(instances)
    check_present("human_source", [roles.human], available)
    references = reference_sources(roles, available)
    check_present("reference", references, available)
    check_present("judges", roles.judges, available)
    resolved = ResolvedLabels(
        roles, references,
        human=[i.labels.get(roles.human) for i in instances],
        ai=[i.labels.get(roles.ai) for i in instances],
        reference=[strict_majority([i.labels.get(s) for s in references]) for i in instances],
        confidence=np.array([np.nan if (c := judge_confidence(i, roles)) is None else c
                             for i in instances]),
        ai_in_data=roles.ai in available)
    resolved.notes = _notes(resolved, len(instances), available)
    return resolved


def _notes(resolved: ResolvedLabels, n: int, available: set[str]) -> list[str]:
    roles = resolved.roles
    reference = " + ".join(resolved.reference_sources)
    notes = [f"human: label_{roles.human}; AI: label_{roles.ai}; reference: "
             + (f"strict majority of {reference}" if len(resolved.reference_sources) > 1 else reference)]
    if not resolved.ai_in_data:
        notes.append(f"no row has label_{roles.ai}: the AI labels must come from a judge")
    elif resolved.n_missing_ai:
        notes.append(f"{resolved.n_missing_ai} of {n} pairs have no label_{roles.ai}: they can only "
                     "go to humans")
    if resolved.n_missing_human:
        notes.append(f"{resolved.n_missing_human} of {n} pairs have no label_{roles.human}")
    if resolved.n_unscored:
        notes.append(f"{resolved.n_unscored} of {n} pairs have no reference label (its sources "
                     "disagree or are absent): left out of scoring")
    known = np.isfinite(resolved.confidence).sum()
    if known:
        verdicts = [s for s in confidence_verdicts(roles) if s in available]
        notes.append(f"judge confidence (agreement of {', '.join(verdicts)} with the AI label) "
                     f"on {known} pairs")
    return notes
