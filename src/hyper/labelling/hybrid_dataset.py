"""The final hybrid preference dataset: each pair labelled by the source its route chose (the
humans' label where it went to humans, the judge's elsewhere), written as reward-model and DPO
trainers read it.

Rows follow TRL's preference layout, `prompt` / `chosen` / `rejected` (`trl`: JSONL;
`parquet`; `hf`: a `datasets` directory for `load_from_disk`), as plain strings or, with
`conversational`, as chat message lists (a transcript prompt with "Human:"/"Assistant:" turns
becomes one message per turn), with per-row provenance: `label_source`, `judge_confidence`,
`cost`. `jsonl` writes the project's own plain format instead (`label_hybrid` beside the
sources' labels, `hybrid_source`, `hybrid_cost`), which every `hyper` command and the
rm-trainer read. A tie gives no Bradley-Terry pair: ties are dropped unless kept on request
(then `chosen` is response A, `rejected` B, and `tie` true).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hyper.api.messages import AI
from hyper.core.atomic_files import atomic_directory, atomic_open, atomic_path
from hyper.core.errors import InvalidArgument
from hyper.core.schema import Instance
from hyper.data.ingest import ASSISTANT_TURN, HUMAN_TURN, plain_record
from hyper.labelling.routed_pairs import RoutedDataset

FORMATS = ("trl", "jsonl", "parquet", "hf")
HYBRID = "hybrid"  # the label column of a `jsonl` export: label_hybrid
TIE_POLICIES = ("drop", "keep")


@dataclass(frozen=True)
class LabelledPair:
    instance: Instance
    label: str  # "A", "B" or "tie"
    source: str  # the label's source: a paid source's name, or the judge's
    cost: float


@dataclass(frozen=True)
class ExportCounts:
    n_pairs: int
    n_written: int
    n_ties_dropped: int
    n_ties_kept: int
    by_source: dict[str, int]  # rows written per label source

    def lines(self) -> list[str]:
        ties = (f"{self.n_ties_dropped} ties dropped (no Bradley-Terry pair)" if self.n_ties_dropped
                else f"{self.n_ties_kept} ties kept (tie=true)")
        by_source = ", ".join(f"{source} {count}" for source, count in sorted(self.by_source.items()))
        return [f"rows           {self.n_written} of {self.n_pairs} pairs; {ties}", f"label source   {by_source}"]


def hybrid_pairs(routed: RoutedDataset, human_labels: dict[str, str], costs: dict[str, float],
                 allow_pending: bool = False) -> list[LabelledPair]:
    """Every routed pair with the label of the source its route chose. A pair routed to
    humans without a returned label is an error unless `allow_pending` (then it is left out)."""
    pairs, pending = [], []
    for instance in routed.instances:
        route = routed.routes[instance.id]
        if route == AI:
            label = instance.labels.get(routed.ai_source)
            if label is None:  # Route sends pairs without an AI label to humans: not from this route
                raise InvalidArgument("--route", f"pair {instance.id!r} was routed to ai but has no "
                                                 f"label_{routed.ai_source}")
            pairs.append(LabelledPair(instance, label, routed.ai_source, 0.0))
        elif instance.id in human_labels:
            pairs.append(LabelledPair(instance, human_labels[instance.id], route, costs.get(instance.id, 0.0)))
        else:
            pending.append(instance.id)
    if pending and not allow_pending:
        raise InvalidArgument("--labels", f"{len(pending)} pairs routed to humans have no label yet (first: "
                                          f"{pending[0]!r}); import them, or pass --allow-pending to leave "
                                          "them out")
    return pairs


def single_source_pairs(instances: list[Instance], source: str) -> list[LabelledPair]:
    """A labelled dataset with one label source (no route): pairs without it are left out."""
    if not any(source in i.labels for i in instances):
        raise InvalidArgument("--label-source", f"no row has label_{source}")
    return [LabelledPair(i, i.labels[source], source, i.costs.get(source, 0.0)) for i in instances
            if source in i.labels]


def transcript_messages(prompt: str) -> list[dict]:
    """A prompt as chat messages: HH-style "Human:"/"Assistant:" turns become one message
    each; any other prompt is one user message."""
    if not prompt.startswith(HUMAN_TURN):
        return [{"role": "user", "content": prompt}]
    parts = re.split(f"({re.escape(HUMAN_TURN)}|{re.escape(ASSISTANT_TURN)})", prompt)[1:]
    roles = {HUMAN_TURN: "user", ASSISTANT_TURN: "assistant"}
    messages = [{"role": roles[marker], "content": text.strip()} for marker, text in zip(parts[::2], parts[1::2],
                                                                                          strict=True)]
    return messages[:-1] if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"] \
        else messages


def preference_row(pair: LabelledPair, conversational: bool) -> dict:
    instance = pair.instance
    chosen, rejected = ((instance.response_b, instance.response_a) if pair.label == "B"
                        else (instance.response_a, instance.response_b))
    row: dict = ({"prompt": transcript_messages(instance.prompt),
                  "chosen": [{"role": "assistant", "content": chosen}],
                  "rejected": [{"role": "assistant", "content": rejected}]} if conversational
                 else {"prompt": instance.prompt, "chosen": chosen, "rejected": rejected})
    confidence = instance.judge_confidence
    row.update(id=instance.id, label=pair.label, tie=pair.label == "tie", label_source=pair.source,
               judge_confidence=None if confidence is None or math.isnan(confidence) else confidence,
               cost=pair.cost)
    return row


def plain_row(pair: LabelledPair) -> dict:
    """The project's plain format: the pair with its final label as label_hybrid."""
    record = plain_record(pair.instance)
    record.update({f"label_{HYBRID}": pair.label, "hybrid_source": pair.source, "hybrid_cost": pair.cost})
    return record


def preference_rows(pairs: list[LabelledPair], ties: str, format: str,
                    conversational: bool = False) -> tuple[list[dict], ExportCounts]:
    if ties not in TIE_POLICIES:
        raise InvalidArgument("--ties", f"{ties!r} is not one of {TIE_POLICIES}")
    n_ties = sum(p.label == "tie" for p in pairs)
    kept = [p for p in pairs if ties == "keep" or p.label != "tie"]
    counts = ExportCounts(len(pairs), len(kept), n_ties if ties == "drop" else 0, n_ties if ties == "keep" else 0,
                          dict(Counter(p.source for p in kept)))
    if format == "jsonl":
        return [plain_row(p) for p in kept], counts
    return [preference_row(p, conversational) for p in kept], counts


def write_rows(rows: list[dict], out: Path, format: str) -> None:
    """Writes all or nothing: a file or directory appears only once complete."""
    if format in ("trl", "jsonl"):
        with atomic_open(out) as stream:
            for row in rows:
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_path(out) as temporary:
            pq.write_table(pa.Table.from_pylist(rows), temporary)
    elif format == "hf":
        import datasets

        with atomic_directory(out) as temporary:
            datasets.Dataset.from_list(rows).save_to_disk(str(temporary))
    else:
        raise InvalidArgument("--format", f"{format!r} is not one of {FORMATS}")
