"""The hand-off to an annotation tool and back: the human-routed pairs as tasks for Label Studio,
Argilla or a spreadsheet (with the judge's verdict as a suggestion), and the tool's export read
back into validated human labels.

Every problem in an import is reported with its row (1-based: a task or record of a JSON
export, a line of a CSV after its header) and field, and an import with problems writes
nothing. Several annotators of one item are all kept; the item's label is their strict
majority, "tie" when there is none.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

from hyper.core.atomic_files import atomic_open, write_json_atomic, write_text_atomic
from hyper.core.errors import InvalidArgument, InvalidInstance
from hyper.core.schema import PREFERENCES, Instance, normalize_label
from hyper.core.stats import Estimate, wilson
from hyper.data.label_sources import strict_majority
from hyper.labelling.routed_pairs import RoutedDataset

TOOLS = ("label-studio", "argilla", "csv")
QUESTION = "preference"  # the one question every tool's project asks
FIELDS = ("prompt", "response_a", "response_b")
CSV_COLUMNS = ("item_id", "route", "prompt", "response_a", "response_b", "judge_label", "judge_confidence",
               "annotator", "label")


@dataclass(frozen=True)
class Suggestion:
    label: str
    confidence: float | None
    judge: str


def suggestion(instance: Instance, ai_source: str) -> Suggestion | None:
    """The judge's verdict on a pair, shown to annotators as a pre-annotation."""
    label = instance.labels.get(ai_source) if ai_source else None
    return Suggestion(label, instance.judge_confidence, ai_source) if label else None


# ---------------------------------------------------------------------------- export


def label_studio_config() -> str:
    """The labelling interface: the prompt, both responses, one single-choice question."""
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in PREFERENCES)
    return f"""<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Response A"/>
  <Text name="response_a" value="$response_a"/>
  <Header value="Response B"/>
  <Text name="response_b" value="$response_b"/>
  <Header value="Which response is better?"/>
  <Choices name="{QUESTION}" toName="prompt" choice="single-radio" required="true">
{choices}
  </Choices>
</View>
"""


def label_studio_task(instance: Instance, route: str, hint: Suggestion | None) -> dict:
    task: dict = {"data": {"item_id": instance.id, "route": route,
                           **{name: getattr(instance, name) for name in FIELDS}}}
    if hint:
        prediction: dict[str, object] = {"model_version": hint.judge, "result": [{
            "from_name": QUESTION, "to_name": "prompt", "type": "choices", "value": {"choices": [hint.label]}}]}
        if hint.confidence is not None:
            prediction["score"] = hint.confidence
        task["predictions"] = [prediction]
    return task


def argilla_settings() -> dict:
    """Argilla 2.x dataset settings (`rg.Settings.from_json`): three text fields, one label question."""
    return {
        "guidelines": "Read the prompt and both responses; choose the better response, or tie.",
        "allow_extra_metadata": True,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "fields": [{"name": name, "title": name.replace("_", " ").capitalize(), "required": True,
                    "settings": {"type": "text", "use_markdown": False}} for name in FIELDS],
        "questions": [{"name": QUESTION, "title": "Which response is better?", "required": True,
                       "settings": {"type": "label_selection",
                                    "options": [{"value": label, "text": label} for label in PREFERENCES]}}],
        "metadata": [], "vectors": [], "mapping": None,
    }


def argilla_record(instance: Instance, route: str, hint: Suggestion | None) -> dict:
    """A record as `dataset.records.log` takes it: fields by name, the question's key as the
    suggestion, the item id as the record id."""
    record = {"id": instance.id, **{name: getattr(instance, name) for name in FIELDS}, "route": route}
    if hint:
        record[QUESTION] = hint.label
        record["metadata"] = {"judge": hint.judge, "judge_confidence": hint.confidence}
    return record


def csv_row(instance: Instance, route: str, hint: Suggestion | None) -> dict:
    return {"item_id": instance.id, "route": route, **{name: getattr(instance, name) for name in FIELDS},
            "judge_label": hint.label if hint else "",
            "judge_confidence": "" if hint is None or hint.confidence is None else f"{hint.confidence:.4f}",
            "annotator": "", "label": ""}


def export_tasks(routed: RoutedDataset, tool: str, directory: Path) -> list[Path]:
    """Writes the human-routed pairs for `tool` into `directory`; returns the files written."""
    items = [(i, routed.routes[i.id], suggestion(i, routed.ai_source)) for i in routed.paid()]
    directory.mkdir(parents=True, exist_ok=True)
    if tool == "label-studio":
        write_text_atomic(directory / "label_config.xml", label_studio_config())
        with atomic_open(directory / "tasks.json") as out:
            json.dump([label_studio_task(*item) for item in items], out, indent=1)
        return [directory / "label_config.xml", directory / "tasks.json"]
    if tool == "argilla":
        write_json_atomic(directory / "settings.json", argilla_settings())
        with atomic_open(directory / "records.json") as out:
            json.dump([argilla_record(*item) for item in items], out, indent=1)
        return [directory / "settings.json", directory / "records.json"]
    if tool == "csv":
        with atomic_open(directory / "tasks.csv") as out:
            writer = csv.DictWriter(out, CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_row(*item) for item in items)
        return [directory / "tasks.csv"]
    raise InvalidArgument("--format", f"{tool!r} is not one of {TOOLS}")


# ---------------------------------------------------------------------------- import


@dataclass(frozen=True)
class HumanLabel:
    row: int
    item_id: str
    annotator: str
    label: str


@dataclass
class ParsedExport:
    labels: list[HumanLabel]
    errors: list[InvalidInstance]
    n_skipped: int = 0  # cancelled or empty annotations (an annotator pressed "skip")


def _label(value: object, row: int, where: str, errors: list[InvalidInstance]) -> str | None:
    label = normalize_label(value) if isinstance(value, str) else None
    if label is None:
        errors.append(InvalidInstance(row, where, f"{value!r} is not one of {PREFERENCES}"))
    return label


def _label_studio_choice(result: list, row: int, where: str, errors: list[InvalidInstance]) -> str | None:
    picks = [r for r in result if isinstance(r, dict) and r.get("from_name") == QUESTION]
    if len(picks) != 1:
        errors.append(InvalidInstance(row, f"{where}.result", f"expected one '{QUESTION}' answer, got {len(picks)}"))
        return None
    choices = (picks[0].get("value") or {}).get("choices")
    if not isinstance(choices, list) or len(choices) != 1:
        errors.append(InvalidInstance(row, f"{where}.result[0].value.choices", f"expected one choice, got {choices!r}"))
        return None
    return _label(choices[0], row, f"{where}.result[0].value.choices[0]", errors)


def _annotator(value: object) -> str:
    """Label Studio exports `completed_by` as a user id, or an object with an email."""
    if isinstance(value, dict):
        return str(value.get("email") or value.get("id") or "")
    return "" if value is None else str(value)


@dataclass(frozen=True)
class _JsonExport:
    """Where a tool's JSON export keeps each item's id and its annotators' answers."""

    what: str
    id_field: str
    item_id: Callable[[dict], object]
    answers_field: str
    answers: Callable[[dict], list]
    skipped: Callable[[dict], bool]  # cancelled, empty or draft: counted, not read
    label: Callable[[dict, int, str, list[InvalidInstance]], str | None]  # None: an error was added
    annotator_field: str
    annotator: Callable[[dict], str]


# Label Studio's JSON export: a list of tasks, each with its data and its annotations.
LABEL_STUDIO_EXPORT = _JsonExport(
    "tasks", "data.item_id", lambda task: (task.get("data") or {}).get("item_id"),
    "annotations", lambda task: task.get("annotations") or [],
    lambda answer: bool(answer.get("was_cancelled") or not answer.get("result")),
    lambda answer, row, where, errors: _label_studio_choice(answer["result"], row, where, errors),
    "completed_by", lambda answer: _annotator(answer.get("completed_by")))
# Argilla records as `dataset.records.to_list(flatten=False)` (or `to_json`) gives them:
# responses keyed by question, each a list of {value, user_id, status}.
ARGILLA_EXPORT = _JsonExport(
    "records", "id", lambda record: record.get("id"),
    f"responses.{QUESTION}", lambda record: (record.get("responses") or {}).get(QUESTION) or [],
    lambda answer: answer.get("status", "submitted") != "submitted",
    lambda answer, row, where, errors: _label(answer.get("value"), row, f"{where}.value", errors),
    "user_id", lambda answer: str(answer.get("user_id") or ""))


def parse_json_export(items: object, layout: _JsonExport) -> ParsedExport:
    parsed = ParsedExport([], [])
    if not isinstance(items, list):
        return ParsedExport([], [InvalidInstance(1, "(file)", f"expected a JSON list of {layout.what}")])
    for row, item in enumerate(items, start=1):
        item_id = layout.item_id(item) if isinstance(item, dict) else None
        if not isinstance(item_id, str) or not item_id:
            parsed.errors.append(InvalidInstance(row, layout.id_field, f"missing: not one of the {layout.what} "
                                                                       "hyper exported"))
            continue
        for k, answer in enumerate(layout.answers(item)):
            where = f"{layout.answers_field}[{k}]"
            if layout.skipped(answer):
                parsed.n_skipped += 1
                continue
            label = layout.label(answer, row, where, parsed.errors)
            annotator = layout.annotator(answer)
            if not annotator:
                parsed.errors.append(InvalidInstance(row, f"{where}.{layout.annotator_field}", "missing"))
            elif label:
                parsed.labels.append(HumanLabel(row, item_id, annotator, label))
    return parsed


def parse_csv(text: str) -> ParsedExport:
    """A spreadsheet: one row per (item, annotator) with item_id and label (annotator optional)."""
    parsed = ParsedExport([], [])
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("item_id", "label") if c not in (reader.fieldnames or [])]
    if missing:
        return ParsedExport([], [InvalidInstance(1, missing[0], "missing column in the header")])
    for row, record in enumerate(reader, start=1):
        item_id, value = (record.get("item_id") or "").strip(), (record.get("label") or "").strip()
        if not item_id:
            parsed.errors.append(InvalidInstance(row, "item_id", "empty"))
        elif not value:
            parsed.n_skipped += 1  # a task nobody labelled yet
        elif label := _label(value, row, "label", parsed.errors):
            parsed.labels.append(HumanLabel(row, item_id, (record.get("annotator") or "").strip() or "annotator",
                                            label))
    return parsed


def detect_tool(path: Path, text: str) -> str:
    if path.suffix.lower() == ".csv":
        return "csv"
    try:
        first = (json.loads(text) or [{}])[0]
    except (ValueError, IndexError, KeyError, TypeError):
        raise InvalidArgument("--format", f"{path}: neither CSV nor a JSON list: say --format") from None
    return "label-studio" if isinstance(first, dict) and "data" in first else "argilla"


def parse_export(path: Path, tool: str = "auto") -> ParsedExport:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgument("file", f"{path}: cannot be read as UTF-8 text ({error})") from None
    tool = detect_tool(path, text) if tool == "auto" else tool
    if tool == "csv":
        return parse_csv(text)
    try:
        data = json.loads(text)
    except ValueError as error:
        return ParsedExport([], [InvalidInstance(error.lineno if hasattr(error, "lineno") else 1, "(file)",
                                                 f"not JSON: {error}")])
    if tool == "label-studio":
        return parse_json_export(data, LABEL_STUDIO_EXPORT)
    if tool == "argilla":
        return parse_json_export(data, ARGILLA_EXPORT)
    raise InvalidArgument("--format", f"{tool!r} is not 'auto' or one of {TOOLS}")


# ---------------------------------------------------------------------------- merge


@dataclass
class MergedLabels:
    """Per human-routed item: every annotator's label and their majority."""

    annotations: dict[str, dict[str, str]] = field(default_factory=dict)  # item id -> annotator -> label
    n_skipped: int = 0

    def label(self, item_id: str) -> str:
        return strict_majority(list(self.annotations[item_id].values())) or "tie"

    @property
    def n_disagreements(self) -> int:
        return sum(len(set(votes.values())) > 1 for votes in self.annotations.values())


def check_against_route(parsed: ParsedExport, routed: RoutedDataset) -> MergedLabels:
    """Labels for items the route sent to humans, one per annotator and item; every other
    case is an error naming its row and field (nothing is merged while any remains)."""
    errors = list(parsed.errors)
    merged = MergedLabels(n_skipped=parsed.n_skipped)
    first_row: dict[tuple[str, str], HumanLabel] = {}
    for label in parsed.labels:
        route = routed.route_of(label.item_id)
        if route is None:
            errors.append(InvalidInstance(label.row, "item_id", f"{label.item_id!r} is not in route {routed.route_id}"))
            continue
        if route == "ai":
            errors.append(InvalidInstance(label.row, "item_id", f"{label.item_id!r} was routed to the AI judge, "
                                                                "not to humans"))
            continue
        earlier = first_row.setdefault((label.item_id, label.annotator), label)
        if earlier is not label:
            what = ("duplicate" if earlier.label == label.label
                    else f"conflicting label {label.label!r} vs {earlier.label!r}")
            errors.append(InvalidInstance(label.row, "annotator", f"{what}: {label.annotator!r} already labelled "
                                                                  f"{label.item_id!r} on row {earlier.row}"))
            continue
        merged.annotations.setdefault(label.item_id, {})[label.annotator] = label.label
    if errors:
        raise LabelsRejected(errors)
    return merged


class LabelsRejected(InvalidArgument):
    def __init__(self, errors: list[InvalidInstance], max_listed: int = 20):
        listed = "\n".join(f"  {e}" for e in errors[:max_listed])
        more = f"\n  ... and {len(errors) - max_listed} more" if len(errors) > max_listed else ""
        super().__init__("file", f"{len(errors)} problem(s); nothing was merged:\n{listed}{more}")
        self.errors = errors


@dataclass(frozen=True)
class ImportReport:
    n_items: int  # human-routed items in the route
    n_labelled: int  # of them, with at least one human label
    n_annotations: int
    annotators: list[str]
    n_disagreements: int  # items whose annotators disagree (majority kept; "tie" without one)
    n_skipped: int
    judge_agreement: Estimate | None  # majority human label = the judge's, on items both labelled
    n_compared: int

    def lines(self) -> Iterator[str]:
        yield (f"labelled       {self.n_labelled} of {self.n_items} human-routed items "
               f"({self.n_items - self.n_labelled} still pending)")
        yield f"annotations    {self.n_annotations} from {len(self.annotators)} annotator(s); {self.n_skipped} skipped"
        yield f"disagreements  {self.n_disagreements} items (their label: the strict majority, else tie)"
        if self.judge_agreement is not None:
            e = self.judge_agreement
            yield (f"human vs judge agree on {e.mean:.1%} [{e.ci_low:.1%}, {e.ci_high:.1%}] of {self.n_compared} "
                   "returned items the judge labelled")


def report(merged: MergedLabels, routed: RoutedDataset) -> ImportReport:
    by_id = {i.id: i for i in routed.instances}
    compared = [(merged.label(item), by_id[item].labels[routed.ai_source]) for item in merged.annotations
                if routed.ai_source in by_id[item].labels]
    agreement = wilson(sum(h == j for h, j in compared), len(compared)) if compared else None
    annotators = sorted({a for votes in merged.annotations.values() for a in votes})
    return ImportReport(len(routed.paid()), len(merged.annotations),
                        sum(len(v) for v in merged.annotations.values()), annotators, merged.n_disagreements,
                        merged.n_skipped, agreement, len(compared))


def labelled_records(merged: MergedLabels, routed: RoutedDataset, human_source: str) -> list[dict]:
    """The human-labelled items as plain-format rows: label_<human_source> is the majority,
    `annotations` keeps every annotator's label."""
    by_id = {i.id: i for i in routed.instances}
    return [{"id": item, **{name: getattr(by_id[item], name) for name in FIELDS},
             f"label_{human_source}": merged.label(item), "annotations": dict(sorted(votes.items()))}
            for item, votes in merged.annotations.items()]

