"""Reads preference-pair files (HH-RLHF, MultiPref raw and features, plain) into a Dataset.

Every row is validated; bad rows are collected, never silently dropped: the file is refused
as a whole (DatasetRejected) unless the caller asks to skip them, and then they are counted.

Error fields name what the user sees in the file: the file's own column (after `columns`
remapping), a path into a nested value ("expert_worker_annotations[0].overall_pref", 0-based
like JSON paths), "line" for a JSONL line that is not a JSON object, "id" for a duplicate
content-derived id, and "format" when no format fits.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from hyper.core.errors import DatasetRejected, InvalidArgument, InvalidInstance
from hyper.core.schema import Dataset, Instance, has_lone_surrogate, normalize_label, stable_id

FORMATS = ("hh-rlhf", "multipref-raw", "multipref-features", "plain", "rewardbench")

ASSISTANT_TURN = "\n\nAssistant:"
HUMAN_TURN = "\n\nHuman:"
PLAIN_LABEL_PREFIX = "label_"
PLAIN_COST_PREFIX = "cost_"

Record = Mapping[str, object]


# Notes on the row being read (a value coerced, not refused): set by the row loop around each
# reader call, so the per-format readers stay plain functions of one record.
_row_notes: ContextVar[list[tuple[str, str]]] = ContextVar("row_notes")


class _BadField(Exception):
    """A field error inside one record; the row loop adds the row and the file's column name."""

    def __init__(self, field: str, reason: str):
        super().__init__(field, reason)
        self.field = field
        self.reason = reason


# ---------------------------------------------------------------------------- field validation


def _string(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _BadField(name, f"expected a string, got {type(value).__name__}")
    if has_lone_surrogate(value):
        raise _BadField(name, "not valid Unicode (a lone UTF-16 surrogate, e.g. the JSON escape \\ud800)")
    return value


def _text(record: Record, name: str) -> str:
    """A required string field: present, a string, and not blank."""
    value = record.get(name)
    if value is None:
        raise _BadField(name, "missing")
    value = _string(value, name)
    if not value.strip():
        raise _BadField(name, "empty")
    return value


def _response(record: Record, name: str) -> str:
    """A response: present and a string, but possibly empty (a model can answer with nothing,
    and real data has such pairs, e.g. four rows of the bundled HH-RLHF split).

    A JSON boolean or number is read as the text it stands for, and the row gets a note: real
    exports hold them where a model answered "True" and a loader parsed the answer (six rows
    of the PandaLM test set). Anything else that is not a string is an error.
    """
    value = record.get(name)
    if value is None:
        raise _BadField(name, "missing")
    if isinstance(value, bool | int | float) and not (isinstance(value, float) and not math.isfinite(value)):
        text = str(value)
        _row_notes.get().append((name, f"the JSON {type(value).__name__} {json.dumps(value)} "
                                       f"was read as the text {text!r}"))
        return text
    return _string(value, name)


def _optional_text(record: Record, name: str) -> str:
    value = record.get(name)
    return "" if value is None else _string(value, name)


def _identifier(record: Record, name: str) -> str:
    """A required id; integers are accepted too, since Parquet writers often type id columns so."""
    value = record.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(record, name)


def _label(value: object, name: str) -> str:
    label = normalize_label(value) if isinstance(value, str) else None
    if label is None:
        raise _BadField(name, f"unknown label {value!r} (expected A, B, tie or MultiPref's five)")
    return label


def _optional_labels(record: Record, columns_by_source: Mapping[str, str]) -> dict[str, str]:
    """Labels from the columns that hold one; null means that source did not label the row."""
    return {
        source: _label(record[column], column)
        for source, column in columns_by_source.items()
        if record.get(column) is not None
    }


def _costs(record: Record) -> dict[str, float]:
    """Per-source annotation costs from cost_<source> columns: positive finite numbers."""
    costs = {}
    for column, value in record.items():
        if not column.startswith(PLAIN_COST_PREFIX) or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value > 0):
            raise _BadField(column, f"expected a positive number, got {value!r}")
        costs[column.removeprefix(PLAIN_COST_PREFIX)] = float(value)
    return costs


def _judge_confidence(record: Record) -> float | None:
    value = record.get("judge_confidence")
    if value is None:
        return None
    # `not 0 <= value <= 1` is also true for NaN, which JSON readers accept.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _BadField("judge_confidence", f"expected a number in [0, 1], got {value!r}")
    return float(value)


def _majority(votes: Iterable[str]) -> str:
    """The most common of A/B/tie; a split vote (two labels share the top count) is a tie."""
    ranked = Counter(votes).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return "tie"
    return ranked[0][0]


# ---------------------------------------------------------------------------- hh-rlhf


def _split_hh_pair(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) of two transcripts sharing their prompt.

    The prompt ends at the last Assistant turn of the shared prefix rather than each transcript's
    own last one: some responses themselves contain "\\n\\nAssistant:" (five rows of the bundled
    harmless-base test split), and splitting those at their own last turn would garble them.
    """
    for name, transcript in (("chosen", chosen), ("rejected", rejected)):
        if ASSISTANT_TURN not in transcript:
            raise _BadField(name, "transcript has no '\\n\\nAssistant:' turn")
    cut = os.path.commonprefix([chosen, rejected]).rfind(ASSISTANT_TURN)
    prompt = chosen[:cut].strip() if cut >= 0 else ""
    start = cut + len(ASSISTANT_TURN)
    responses = [transcript[start:].removeprefix(" ") for transcript in (chosen, rejected)]
    # A Human turn after the cut means the transcripts already differ before the final reply.
    if not prompt or any(HUMAN_TURN in response for response in responses):
        raise _BadField("rejected", "chosen and rejected differ before the last Assistant turn")
    return prompt, responses[0], responses[1]


def _place_ranked_pair(pair_id: str, prompt: str, chosen: str, rejected: str) -> Instance:
    """The pair in slots A/B, labelled; a bit of the content id decides which slot chosen takes.

    Chosen always in slot A would teach a reward model (or an AI judge's calibration) a position
    bias; the id bit keeps the choice deterministic across reads and machines.
    """
    digest = pair_id if re.fullmatch(r"[0-9a-f]+", pair_id) else stable_id(pair_id)  # ids a file gives may be any text
    chosen_is_a = int(digest, 16) % 2 == 0
    label = "tie" if chosen == rejected else ("A" if chosen_is_a else "B")
    first, second = (chosen, rejected) if chosen_is_a else (rejected, chosen)
    return Instance(pair_id, prompt, first, second, labels={"human": label})


def _read_hh_rlhf(record: Record) -> Instance:
    prompt, chosen, rejected = _split_hh_pair(_text(record, "chosen"), _text(record, "rejected"))
    return _place_ranked_pair(stable_id(prompt, chosen, rejected), prompt, chosen, rejected)


# ---------------------------------------------------------------------------- rewardbench


def _read_rewardbench(record: Record) -> Instance:
    """RewardBench's layout (prompt, chosen, rejected, subset): an evaluation set."""
    prompt, chosen, rejected = (_text(record, "prompt"), _response(record, "chosen"),
                                _response(record, "rejected"))
    pair_id = (_identifier(record, "id") if record.get("id") is not None
               else stable_id(prompt, chosen, rejected))
    subset = record.get("subset") or ""
    if not isinstance(subset, str):
        raise _BadField("subset", f"expected a string, got {type(subset).__name__}")
    return dataclasses.replace(_place_ranked_pair(pair_id, prompt, chosen, rejected), subset=subset)


# ---------------------------------------------------------------------------- multipref-raw

ANNOTATION_LISTS = {"normal": "normal_worker_annotations", "expert": "expert_worker_annotations"}


def _overall_prefs(record: Record, column: str) -> list[str]:
    """The collapsed overall_pref of each annotation in one list; a missing list has none."""
    annotations = record.get(column)
    if annotations is None:
        return []
    if not isinstance(annotations, (list, tuple)):
        raise _BadField(column, f"expected a list of annotations, got {type(annotations).__name__}")
    prefs = []
    for index, annotation in enumerate(annotations):
        name = f"{column}[{index}].overall_pref"
        if not isinstance(annotation, Mapping) or annotation.get("overall_pref") is None:
            raise _BadField(name, "missing")
        prefs.append(_label(annotation["overall_pref"], name))
    return prefs


def _annotation_labels(record: Record) -> dict[str, str]:
    """Per-list majorities ("normal", "expert") and the majority over every annotator ("human")."""
    prefs = {source: _overall_prefs(record, column) for source, column in ANNOTATION_LISTS.items()}
    labels = {source: _majority(votes) for source, votes in prefs.items() if votes}
    every_vote = [vote for votes in prefs.values() for vote in votes]
    if every_vote:
        labels["human"] = _majority(every_vote)
    return labels


def _read_multipref_raw(record: Record) -> Instance:
    return Instance(
        id=_identifier(record, "comparison_id"),
        prompt=_text(record, "text"),
        response_a=_response(record, "completion_a"),
        response_b=_response(record, "completion_b"),
        labels=_annotation_labels(record),
    )


# ---------------------------------------------------------------------------- multipref-features


def _read_multipref_features(record: Record) -> Instance:
    prompt_column = "prompt" if "prompt" in record else "text"
    return Instance(
        id=_identifier(record, "id"),
        prompt=_text(record, prompt_column),
        response_a=_response(record, "completion_a"),
        response_b=_response(record, "completion_b"),
        labels=_optional_labels(record, {"human": "pref_human", "ai": "pref_gpt4"}),
    )


# ---------------------------------------------------------------------------- plain


def _read_plain(record: Record) -> Instance:
    prompt = _text(record, "prompt")
    response_a = _response(record, "response_a")
    response_b = _response(record, "response_b")
    has_id = "id" in record
    label_columns = {
        column.removeprefix(PLAIN_LABEL_PREFIX): column
        for column in record
        if column.startswith(PLAIN_LABEL_PREFIX) and column != PLAIN_LABEL_PREFIX
    }
    costs = _costs(record)
    return Instance(
        id=_identifier(record, "id") if has_id else stable_id(prompt, response_a, response_b),
        prompt=prompt,
        response_a=response_a,
        response_b=response_b,
        labels=_optional_labels(record, label_columns),
        judge_confidence=_judge_confidence(record),
        costs=costs,
        subset=_optional_text(record, "subset"),
    )


# ---------------------------------------------------------------------------- format registry


@dataclass(frozen=True)
class _Format:
    read: Callable[[Record], Instance]
    fields: frozenset[str]  # the names `columns` may remap
    id_field: str  # the field a duplicate id is reported under
    # families of remappable names (plain's label_<source>, cost_<source>)
    field_prefixes: tuple[str, ...] = ()

    def knows(self, name: str) -> bool:
        return name in self.fields or name.startswith(self.field_prefixes)


_FORMATS: dict[str, _Format] = {
    "hh-rlhf": _Format(_read_hh_rlhf, frozenset({"chosen", "rejected"}), "id"),
    "rewardbench": _Format(_read_rewardbench,
                           frozenset({"id", "prompt", "chosen", "rejected", "subset"}), "id"),
    "multipref-raw": _Format(
        _read_multipref_raw,
        frozenset({"comparison_id", "text", "completion_a", "completion_b"})
        | frozenset(ANNOTATION_LISTS.values()),
        "comparison_id",
    ),
    "multipref-features": _Format(
        _read_multipref_features,
        frozenset({"id", "prompt", "text", "completion_a", "completion_b"})
        | frozenset({"pref_human", "pref_gpt4"}),
        "id",
    ),
    "plain": _Format(
        _read_plain,
        frozenset({"id", "prompt", "response_a", "response_b", "judge_confidence", "subset"}),
        "id",
        field_prefixes=(PLAIN_LABEL_PREFIX, PLAIN_COST_PREFIX),
    ),
}


def detect_format(first_record: Mapping, row: int = 1) -> str:
    """The format whose identifying columns the record has; checked in order, first match wins."""
    present = set(first_record)
    if {"prompt", "chosen", "rejected"} <= present:
        return "rewardbench"
    if {"chosen", "rejected"} <= present:
        return "hh-rlhf"
    if {"comparison_id", "completion_a"} <= present:
        return "multipref-raw"
    if present & {"pref_human", "pref_gpt4"}:
        return "multipref-features"
    if "response_a" in present:
        return "plain"
    raise InvalidInstance(
        row, "format", f"no known format has columns {sorted(present)}; pass one of {FORMATS}"
    )


# ---------------------------------------------------------------------------- column remapping


def _check_columns(columns: Mapping[str, str], format_name: str) -> None:
    unknown = sorted(name for name in columns if not _FORMATS[format_name].knows(name))
    if unknown:
        raise InvalidArgument("columns", f"{unknown} are not fields of format {format_name!r}")
    targets = list(columns.values())
    if not all(isinstance(target, str) for target in targets) or len(set(targets)) < len(targets):
        raise InvalidArgument("columns", "each field must map to a distinct column name")


def _rename(record: dict[str, object], columns: Mapping[str, str]) -> dict[str, object]:
    """The record under canonical names; a file column that a remap shadows is dropped."""
    if not columns:
        return record
    field_of_column = {column: field for field, column in columns.items()}
    return {
        field_of_column.get(column, column): value
        for column, value in record.items()
        if column in field_of_column or column not in columns
    }


def _column_in_file(field: str, columns: Mapping[str, str]) -> str:
    """Maps the leading canonical name of an error field back to the file's column name."""
    head = re.findall(r"^\w*", field)[0]
    return columns.get(head, head) + field[len(head) :]


# ---------------------------------------------------------------------------- the row loop


@dataclass
class _Parse:
    """The row loop's state: the format (resolved on the first record under "auto") and results."""

    format_name: str
    columns: Mapping[str, str]
    instances: list[Instance] = field(default_factory=list)
    errors: list[InvalidInstance] = field(default_factory=list)
    row_of_id: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, row: int, record: dict | InvalidInstance) -> None:
        if isinstance(record, InvalidInstance):
            self.errors.append(record)
            return
        record = _rename(record, self.columns)
        if self.format_name == "auto":
            self.format_name = detect_format(record, row)
            _check_columns(self.columns, self.format_name)
        notes = _row_notes.set([])
        try:
            self.instances.append(self._instance(row, record))
            self.notes += [f"row {row}: field '{_column_in_file(name, self.columns)}': {note}"
                           for name, note in _row_notes.get()]
        except _BadField as bad:
            field_in_file = _column_in_file(bad.field, self.columns)
            self.errors.append(InvalidInstance(row, field_in_file, bad.reason))
        finally:
            _row_notes.reset(notes)

    def _instance(self, row: int, record: Record) -> Instance:
        spec = _FORMATS[self.format_name]
        instance = spec.read(record)
        first_row = self.row_of_id.setdefault(instance.id, row)
        if first_row != row:
            reason = f"duplicate id {instance.id!r} (first on row {first_row})"
            raise _BadField(spec.id_field, reason)
        return instance


def plain_record(instance: Instance) -> dict:
    """An instance as one record of the plain format (what `read_dataset(format="plain")` reads)."""
    record: dict[str, object] = {"id": instance.id, "prompt": instance.prompt,
                                 "response_a": instance.response_a, "response_b": instance.response_b}
    record.update({f"{PLAIN_LABEL_PREFIX}{source}": label for source, label in instance.labels.items()})
    record.update({f"{PLAIN_COST_PREFIX}{source}": cost for source, cost in instance.costs.items()})
    if instance.judge_confidence is not None:
        record["judge_confidence"] = instance.judge_confidence
    if instance.subset:
        record["subset"] = instance.subset
    return record


COMPACT_ROWS = 10_000


@dataclass
class ReadChunk:
    """Pairs of a large file as they are read: `kept` without their text (what the dataset
    holds), `before` the number of pairs ahead of them; `with_text` gives some of them whole."""

    before: int
    kept: list[Instance]
    with_text: Callable[[list[int]], list[Instance]]

    @classmethod
    def of(cls, instances: list[Instance], before: int) -> ReadChunk:
        return cls(before, [i.without_text() for i in instances], lambda rows: [instances[k] for k in rows])


def _hand_over(instances: list[Instance], kept: int, on_chunk: Callable[[ReadChunk], None]) -> int:
    """Gives the instances read since `kept` to on_chunk, keeping them without text."""
    chunk = ReadChunk.of(instances[kept:], kept)
    on_chunk(chunk)
    instances[kept:] = chunk.kept
    return len(instances)


def parse_records(
    records: Iterable[tuple[int, dict | InvalidInstance]],
    format: str = "auto",
    columns: Mapping[str, str] | None = None,
    skip_bad_rows: bool = False,
    source: str = "",
    on_chunk: Callable[[ReadChunk], None] | None = None,
) -> Dataset:
    """Validates numbered records (from a file, or inline in a request) into a Dataset.

    With `on_chunk`, the dataset keeps its instances without their text, and every COMPACT_ROWS
    of them go to `on_chunk` as they are read: a large file's text is never held at once."""
    if format != "auto" and format not in _FORMATS:
        raise InvalidArgument("format", f"{format!r} is not 'auto' or one of {FORMATS}")
    columns = dict(columns or {})
    if format != "auto":
        _check_columns(columns, format)
    parse = _Parse(format, columns)
    kept = 0
    for row, record in records:
        parse.add(row, record)
        if on_chunk and len(parse.instances) - kept >= COMPACT_ROWS:
            kept = _hand_over(parse.instances, kept, on_chunk)
    if on_chunk and len(parse.instances) > kept:
        _hand_over(parse.instances, kept, on_chunk)
    if parse.errors and not skip_bad_rows:
        raise DatasetRejected(source, parse.errors)
    return Dataset(parse.instances, source=source, n_skipped=len(parse.errors),
                   format=parse.format_name, notes=parse.notes)
