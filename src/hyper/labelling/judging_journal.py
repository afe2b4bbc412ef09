"""Judging a dataset in chunks that survive a crash: each finished chunk's verdicts are
appended to a journal (flushed and synced) before the next chunk starts, and a rerun reads
the journal and judges only the pairs it does not hold. A pair is judged again only when
the crash came while its chunk was in flight."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hyper.core.errors import InvalidArgument
from hyper.core.schema import Instance


@dataclass(frozen=True)
class JudgedPair:
    id: str
    label: str  # "" when the judge's replies did not parse: the pair gets no AI label
    confidence: float
    consistency: float


@dataclass
class Totals:
    """Usage summed over chunks (those of earlier, interrupted runs included)."""

    usage: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    n_judged_now: int = 0
    n_resumed: int = 0
    judges: set[str] = field(default_factory=set)  # who judged: a journal holds one judge's verdicts

    def add(self, usage: dict[str, float]) -> None:
        for name, value in usage.items():
            self.usage[name] = self.usage.get(name, 0) + value


ChunkJudge = Callable[[list[Instance]], tuple[str, list[JudgedPair], dict[str, float]]]  # judge, pairs, usage


def read_journal(path: Path) -> tuple[dict[str, JudgedPair], Totals]:
    judged, totals, _ = _read_complete(path)
    return judged, totals


def _read_complete(path: Path) -> tuple[dict[str, JudgedPair], Totals, int]:
    """The journal's verdicts and the length in bytes of its complete entries (a crashed run's
    last line, cut mid-write, is not one)."""
    judged: dict[str, JudgedPair] = {}
    totals = Totals()
    complete = 0
    if not path.is_file():
        return judged, totals, complete
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n"):
            break
        judged.update({p["id"]: JudgedPair(**p) for p in entry["judged"]})
        totals.add(entry["usage"])
        totals.seconds += entry.get("seconds", 0.0)
        totals.judges.add(entry["judge"])
        complete += len(line)
    totals.n_resumed = len(judged)
    return judged, totals, complete


def judge_resumably(instances: list[Instance], judge_chunk: ChunkJudge, journal: Path, chunk_size: int,
                    progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[dict[str, JudgedPair],
                                                                                              Totals]:
    judged, totals, complete = _read_complete(journal)
    pending = [i for i in instances if i.id not in judged]
    journal.parent.mkdir(parents=True, exist_ok=True)
    if journal.is_file() and journal.stat().st_size > complete:
        os.truncate(journal, complete)  # a torn last line: new entries must not follow it
    with open(journal, "a") as out:
        for start in range(0, len(pending), chunk_size):
            began = time.monotonic()
            judge, pairs, usage = judge_chunk(pending[start:start + chunk_size])
            seconds = time.monotonic() - began
            if totals.judges - {judge}:
                raise InvalidArgument("--out", f"{journal} holds verdicts of {sorted(totals.judges)}, the tagger's "
                                               f"judge is {judge!r}: remove the journal to start over")
            totals.judges.add(judge)
            entry = {"judge": judge, "judged": [asdict(p) for p in pairs], "usage": usage, "seconds": seconds}
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())
            judged.update({p.id: p for p in pairs})
            totals.add(usage)
            totals.seconds += seconds
            totals.n_judged_now += len(pairs)
            progress(len(judged), len(instances))
    return judged, totals
