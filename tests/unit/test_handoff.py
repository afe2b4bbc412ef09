"""The hand-off to annotation tools and back, and the final hybrid dataset, on PandaLM pairs."""

from __future__ import annotations

import csv
import json

import pytest

from harness.local import HH_DATA, REPO
from hyper.core.errors import InvalidArgument
from hyper.data import dataset_files
from hyper.labelling.annotation_tasks import (
    ARGILLA_EXPORT,
    LABEL_STUDIO_EXPORT,
    LabelsRejected,
    argilla_settings,
    check_against_route,
    export_tasks,
    labelled_records,
    parse_csv,
    parse_export,
    parse_json_export,
    report,
)
from hyper.labelling.hybrid_dataset import (
    hybrid_pairs,
    preference_rows,
    single_source_pairs,
    transcript_messages,
    write_rows,
)
from hyper.labelling.routed_pairs import RoutedDataset

PANDALM = REPO / "data" / "pandalm-testset.jsonl.gz"
JUDGE = "gpt-3.5-turbo"


@pytest.fixture(scope="module")
def routed() -> RoutedDataset:
    """40 PandaLM pairs, every fourth routed to humans."""
    instances = dataset_files.read_dataset(PANDALM).instances[:40]
    routes = {i.id: "human" if k % 4 == 0 else "ai" for k, i in enumerate(instances)}
    return RoutedDataset("0" * 32, JUDGE, instances, routes)


def label_studio_export(tasks: list[dict], annotators: dict[int, list[str]]) -> list[dict]:
    """What Label Studio's JSON export holds after annotators answered (ids as it numbers them)."""
    exported = []
    for row, task in enumerate(tasks):
        annotations = [{"id": 100 + k, "completed_by": user, "was_cancelled": False,
                        "result": [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                                    "value": {"choices": [label]}}]}
                       for k, (user, label) in enumerate(zip((1, 2, 3), annotators.get(row, []), strict=False))]
        exported.append({"id": row + 1, "data": task["data"], "annotations": annotations,
                         "predictions": task.get("predictions", [])})
    return exported


def test_label_studio_tasks_carry_text_and_the_judges_suggestion(routed, tmp_path):
    files = export_tasks(routed, "label-studio", tmp_path)
    assert [f.name for f in files] == ["label_config.xml", "tasks.json"]
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    paid = routed.paid()
    assert [t["data"]["item_id"] for t in tasks] == [i.id for i in paid] and len(paid) == 10
    assert tasks[0]["data"]["prompt"] == paid[0].prompt and tasks[0]["data"]["response_b"] == paid[0].response_b
    suggested = [t["predictions"][0]["result"][0]["value"]["choices"][0] for t in tasks if "predictions" in t]
    assert suggested == [i.labels[JUDGE] for i in paid if JUDGE in i.labels]
    config = (tmp_path / "label_config.xml").read_text()
    assert '<Choices name="preference" toName="prompt"' in config and '$response_a' in config


def test_label_studio_import_keeps_every_annotator_and_reports_agreement(routed, tmp_path):
    export_tasks(routed, "label-studio", tmp_path)
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    paid = routed.paid()
    votes = {k: [paid[k].labels["annotator1"]] for k in range(len(paid))}
    votes[0] = ["A", "B", "B"]  # three annotators, a majority
    votes[1] = ["A", "B"]  # no majority: tie
    del votes[9]  # not labelled yet
    merged = check_against_route(parse_json_export(label_studio_export(tasks, votes), LABEL_STUDIO_EXPORT), routed)
    assert merged.annotations[paid[0].id] == {"1": "A", "2": "B", "3": "B"}
    assert merged.label(paid[0].id) == "B" and merged.label(paid[1].id) == "tie"
    summary = report(merged, routed)
    assert (summary.n_items, summary.n_labelled, summary.n_annotations, summary.n_disagreements) == (10, 9, 12, 2)
    judged = [merged.label(i.id) == i.labels[JUDGE] for i in paid[:9] if JUDGE in i.labels]
    assert summary.n_compared == len(judged)
    assert summary.judge_agreement.mean == pytest.approx(sum(judged) / len(judged))
    records = labelled_records(merged, routed, "human")
    assert records[0]["label_human"] == "B" and records[0]["annotations"] == {"1": "A", "2": "B", "3": "B"}


def test_an_import_with_problems_names_row_and_field_and_merges_nothing(routed):
    paid, to_ai = routed.paid(), [i for i in routed.instances if routed.routes[i.id] == "ai"]
    rows = "item_id,annotator,label\n" + "\n".join([
        f"{paid[0].id},ann,A",
        f"{paid[0].id},ann,B",  # conflicting: the same annotator twice
        f"{paid[1].id},ann,A",
        f"{paid[1].id},ann,A",  # duplicate
        "nope,ann,A",  # unknown id
        f"{to_ai[0].id},ann,A",  # routed to the judge
        f"{paid[2].id},ann,maybe",  # outside the vocabulary
        f"{paid[3].id},ann,",  # not labelled yet: skipped, not an error
    ])
    with pytest.raises(LabelsRejected) as raised:
        check_against_route(parse_csv(rows), routed)
    found = [(e.row, e.field) for e in raised.value.errors]
    assert found == [(7, "label"), (2, "annotator"), (4, "annotator"), (5, "item_id"), (6, "item_id")]
    message = str(raised.value)
    assert "conflicting label 'B' vs 'A'" in message and "duplicate" in message and "routed to the AI" in message
    assert "5 problem(s); nothing was merged" in message


def test_csv_and_argilla_round_trip(routed, tmp_path):
    export_tasks(routed, "csv", tmp_path)
    with open(tmp_path / "tasks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and rows[0]["prompt"] == routed.paid()[0].prompt
    for row in rows:
        row.update(annotator="alice", label="A")
    with open(tmp_path / "done.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    merged = check_against_route(parse_export(tmp_path / "done.csv"), routed)
    assert len(merged.annotations) == 10 and all(v == {"alice": "A"} for v in merged.annotations.values())

    export_tasks(routed, "argilla", tmp_path)
    records = json.loads((tmp_path / "records.json").read_text())
    assert records[0]["id"] == routed.paid()[0].id and set(argilla_settings()["fields"][0]) >= {"name", "settings"}
    for record in records:  # as Argilla's records.to_list(flatten=False) gives them back
        record["responses"] = {"preference": [{"value": "B", "user_id": "u-1", "status": "submitted"},
                                              {"value": "B", "user_id": "u-2", "status": "draft"}]}
    parsed = parse_json_export(records, ARGILLA_EXPORT)
    assert len(parsed.labels) == 10 and parsed.n_skipped == 10


def test_final_dataset_takes_each_label_from_its_route(routed, tmp_path):
    import datasets

    paid = routed.paid()
    human = {i.id: i.labels["annotator1"] for i in paid}
    pairs = hybrid_pairs(routed, human, {i.id: 1.5 for i in paid})
    assert [p.source for p in pairs].count("human") == 10
    rows, counts = preference_rows(pairs, "drop", "trl")
    ties = sum(p.label == "tie" for p in pairs)
    assert counts.n_written == 40 - ties and counts.n_ties_dropped == ties
    first = next(r for r in rows if r["label_source"] == "human")
    instance = next(i for i in paid if i.id == first["id"])
    expected = instance.response_a if human[instance.id] == "A" else instance.response_b
    assert first["chosen"] == expected and first["cost"] == 1.5
    write_rows(rows, tmp_path / "hf", "hf")
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    assert {"prompt", "chosen", "rejected"} <= set(loaded.column_names) and len(loaded) == len(rows)
    assert loaded.features["chosen"].dtype == "string"  # what TRL's RewardTrainer reads

    with pytest.raises(InvalidArgument, match="have no label yet"):
        hybrid_pairs(routed, {}, {})
    assert len(hybrid_pairs(routed, {}, {}, allow_pending=True)) == 30


def test_single_source_export_and_conversational_transcripts(tmp_path):
    hh = dataset_files.read_dataset(HH_DATA).instances[:20]
    rows, counts = preference_rows(single_source_pairs(hh, "human"), "keep", "trl", conversational=True)
    assert counts.n_written == 20
    assert rows[0]["prompt"][0]["role"] == "user" and rows[0]["chosen"][0]["role"] == "assistant"
    messages = transcript_messages("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?")
    assert messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                        {"role": "user", "content": "how are you?"}]
    write_rows(rows, tmp_path / "out.parquet", "parquet")
    plain, _ = preference_rows(single_source_pairs(hh, "human"), "drop", "jsonl")
    write_rows(plain, tmp_path / "plain.jsonl", "jsonl")
    back = dataset_files.read_dataset(tmp_path / "plain.jsonl", "plain")
    assert [i.labels["hybrid"] for i in back.instances] == [i.labels["human"] for i in hh]
    with pytest.raises(InvalidArgument, match="--label-source"):
        single_source_pairs(hh, "gpt-4")


def test_files_that_are_not_a_tools_export_are_refused_by_row_and_field(routed, tmp_path):
    cut = tmp_path / "cut.json"
    cut.write_text('[{"id": 1, "data": {"item_id": "x"}, "annotations": [')
    with pytest.raises(LabelsRejected, match=r"row 1: field '\(file\)': not JSON"):
        check_against_route(parse_export(cut, "label-studio"), routed)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps([{"data": {"text": "not ours"}, "annotations": []},
                                   {"data": {"item_id": routed.paid()[0].id}, "annotations": [
                                       {"completed_by": 4, "result": [{"from_name": "preference",
                                                                       "value": {"choices": ["A", "B"]}}]}]}]))
    with pytest.raises(LabelsRejected) as raised:
        check_against_route(parse_export(foreign), routed)
    assert [(e.row, e.field) for e in raised.value.errors] == [
        (1, "data.item_id"), (2, "annotations[0].result[0].value.choices")]
    with pytest.raises(InvalidArgument, match="--format"):
        parse_export(tmp_path / "cut.json")  # neither CSV nor a JSON list: the tool cannot be told
