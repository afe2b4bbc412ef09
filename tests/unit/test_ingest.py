"""Reading preference-pair files: every format and file kind, row errors, remapping, real data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from hyper.core.errors import DatasetRejected, InvalidArgument, InvalidInstance, NotFound
from hyper.core.schema import stable_id
from hyper.data.dataset_files import read_dataset
from hyper.data.ingest import FORMATS, detect_format
from hyper.data.ingest import plain_record as to_plain_record

DATA = Path(__file__).resolve().parents[2] / "data"

REPO_ROOT = Path(__file__).resolve().parents[2]
HH_HARMLESS_TEST = REPO_ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
FILE_KINDS = (".jsonl", ".jsonl.gz", ".parquet")


def write_records(directory: Path, records: list[dict], suffix: str) -> Path:
    path = directory / f"pairs{suffix}"
    if suffix == ".parquet":
        pd.DataFrame(records).to_parquet(path)
        return path
    write_lines(path, [json.dumps(record) for record in records])
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(text) if path.name.endswith(".gz") else text)
    return path


def hh_record(prompt_turns: str, chosen: str, rejected: str) -> dict:
    return {
        "chosen": f"{prompt_turns}\n\nAssistant: {chosen}",
        "rejected": f"{prompt_turns}\n\nAssistant: {rejected}",
    }


def annotation(overall_pref: str) -> dict:
    return {"overall_pref": overall_pref, "helpful_pref": "Tie", "evaluator": "w1"}


def plain_record(pair_id: str, label: str = "A") -> dict:
    return {
        "id": pair_id,
        "prompt": f"question {pair_id}",
        "response_a": "answer one",
        "response_b": "answer two",
        "label_human": label,
    }


def rejected_errors(path: Path, **options) -> list[tuple[int, str]]:
    with pytest.raises(DatasetRejected) as caught:
        read_dataset(path, **options)
    return [(error.row, error.field) for error in caught.value.errors]


# ---------------------------------------------------------------- every format, every file kind

SAMPLES = {
    "hh-rlhf": [hh_record("\n\nHuman: Hi?", "Hello!", "Go away.")],
    "multipref-raw": [
        {
            "comparison_id": "c1",
            "prompt_id": "p1",
            "text": "Explain tides.",
            "completion_a": "The moon pulls the sea.",
            "completion_b": "Wind.",
            "model_a": "m1",
            "model_b": "m2",
            "source": "anthropic_helpful",
            "normal_worker_annotations": [
                annotation("A-is-clearly-better"),
                annotation("A-is-slightly-better"),
            ],
            "expert_worker_annotations": [annotation("B-is-slightly-better")],
        }
    ],
    "multipref-features": [
        {
            "id": "f1",
            "prompt": "Explain tides.",
            "completion_a": "The moon pulls the sea.",
            "completion_b": "Wind.",
            "pref_human": "A-is-slightly-better",
            "pref_gpt4": "b",
            "domain": "science",
        }
    ],
    "plain": [dict(plain_record("p1", label="tie"), label_ai="B", judge_confidence=0.75)],
    "rewardbench": [{"prompt": "Explain tides.", "chosen": "The moon pulls the sea.",
                     "rejected": "Wind.", "subset": "xstest-should-respond", "id": 7}],
}

TIDES = ("Explain tides.", "The moon pulls the sea.", "Wind.")
EXPECTED = {  # (id, (prompt, response_a, response_b), labels, judge_confidence)
    "multipref-raw": ("c1", TIDES, {"normal": "A", "expert": "B", "human": "A"}, None),
    "multipref-features": ("f1", TIDES, {"human": "A", "ai": "B"}, None),
    "plain": ("p1", ("question p1", "answer one", "answer two"), {"human": "tie", "ai": "B"}, 0.75),
}


@pytest.mark.parametrize("suffix", FILE_KINDS)
@pytest.mark.parametrize("format_name", ["multipref-raw", "multipref-features", "plain"])
def test_pair_formats_read_from_every_file_kind(tmp_path, format_name, suffix):
    path = write_records(tmp_path, SAMPLES[format_name], suffix)

    detected = read_dataset(path)
    named = read_dataset(path, format=format_name)

    [instance] = detected.instances
    texts = (instance.prompt, instance.response_a, instance.response_b)
    assert detected.source == str(path) and detected.n_skipped == 0
    assert (instance.id, texts, instance.labels, instance.judge_confidence) == (
        EXPECTED[format_name]
    )
    assert named.instances == detected.instances


@pytest.mark.parametrize("suffix", FILE_KINDS)
def test_rewardbench_eval_sets_keep_their_subset(tmp_path, suffix):
    path = write_records(tmp_path, SAMPLES["rewardbench"], suffix)

    [instance] = read_dataset(path).instances

    assert instance.id == "7" and instance.subset == "xstest-should-respond"
    responses = {"A": instance.response_a, "B": instance.response_b}
    assert responses[instance.labels["human"]] == "The moon pulls the sea."
    (tmp_path / "plain").mkdir()
    again = read_dataset(write_records(tmp_path / "plain", [to_plain_record(instance)], ".jsonl"))
    assert again.instances[0].subset == "xstest-should-respond"  # kept through the plain format


def test_preference_rows_with_any_text_as_id_are_placed_by_a_hash_of_it(tmp_path):
    rows = [{"id": f"pandalm-{k}", "prompt": f"q{k}", "chosen": f"good {k}", "rejected": f"bad {k}"} for k in range(20)]
    instances = read_dataset(write_records(tmp_path, rows, ".jsonl")).instances
    assert [i.id for i in instances] == [r["id"] for r in rows]
    assert all({"A": i.response_a, "B": i.response_b}[i.labels["human"]].startswith("good") for i in instances)
    assert 0 < sum(i.labels["human"] == "A" for i in instances) < 20  # chosen is not always in slot A


@pytest.mark.parametrize("suffix", FILE_KINDS)
def test_hh_rlhf_reads_from_every_file_kind(tmp_path, suffix):
    path = write_records(tmp_path, SAMPLES["hh-rlhf"], suffix)

    [instance] = read_dataset(path).instances

    assert instance.id == stable_id("Human: Hi?", "Hello!", "Go away.")
    assert instance.prompt == "Human: Hi?"
    chosen_slot = instance.labels["human"]
    responses = {"A": instance.response_a, "B": instance.response_b}
    assert responses[chosen_slot] == "Hello!"
    assert set(responses.values()) == {"Hello!", "Go away."}
    assert read_dataset(path, format="hh-rlhf").instances == [instance]


def test_detect_format_picks_by_columns_and_names_the_format_field_when_none_fits():
    assert [detect_format(SAMPLES[name][0]) for name in FORMATS] == list(FORMATS)
    with pytest.raises(InvalidInstance) as caught:
        detect_format({"question": "q", "answer": "a"})
    assert (caught.value.row, caught.value.field) == (1, "format")


# ---------------------------------------------------------------- hh-rlhf splitting and placement


def test_hh_multi_turn_transcript_keeps_earlier_turns_in_the_prompt(tmp_path):
    turns = "\n\nHuman: Hi.\n\nAssistant: Hello, how can I help?\n\nHuman: Name a colour."
    path = write_records(tmp_path, [hh_record(turns, " Blue, with a space.", "No.")], ".jsonl")

    [instance] = read_dataset(path).instances

    assert instance.prompt == turns.strip()
    # Only the one space after "Assistant:" is dropped, the reply's own leading space is kept.
    assert {instance.response_a, instance.response_b} == {" Blue, with a space.", "No."}


def test_hh_response_containing_an_assistant_turn_splits_at_the_shared_prefix(tmp_path):
    turns = "\n\nHuman: Serial key?"
    chosen = "Here it is:\n\nAssistant:  Logging in now."
    path = write_records(tmp_path, [hh_record(turns, chosen, "No.")], ".jsonl")

    [instance] = read_dataset(path).instances

    assert instance.prompt == "Human: Serial key?"
    assert {instance.response_a, instance.response_b} == {chosen, "No."}


def test_hh_identical_responses_are_kept_as_a_tie(tmp_path):
    path = write_records(tmp_path, [hh_record("\n\nHuman: Hi?", "Hello.", "Hello.")], ".jsonl")

    [instance] = read_dataset(path).instances

    assert instance.labels == {"human": "tie"}


def test_hh_chosen_position_alternates_and_the_label_follows_it(tmp_path):
    records = [hh_record(f"\n\nHuman: Question {n}?", f"good {n}", f"bad {n}") for n in range(12)]
    path = write_records(tmp_path, records, ".jsonl")

    instances = read_dataset(path).instances

    for instance in instances:
        slots = {"A": instance.response_a, "B": instance.response_b}
        assert slots[instance.labels["human"]].startswith("good ")
        assert slots[{"A": "B", "B": "A"}[instance.labels["human"]]].startswith("bad ")
    assert {instance.labels["human"] for instance in instances} == {"A", "B"}


def test_hh_bad_transcripts_name_the_transcript_at_fault(tmp_path):
    records = [
        {"chosen": "\n\nHuman: Hi?", "rejected": "\n\nHuman: Hi?\n\nAssistant: No."},
        {"chosen": "\n\nHuman: Hi?\n\nAssistant: Yes.", "rejected": "\n\nHuman: Hi?"},
        {
            "chosen": "\n\nHuman: Hi?\n\nAssistant: Yes.",
            "rejected": "\n\nHuman: Bye?\n\nAssistant: No.",
        },
        # Differing at an earlier Human turn: the shared prefix ends before the final reply.
        {
            "chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d",
            "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: x\n\nAssistant: y",
        },
        {"chosen": "", "rejected": "\n\nHuman: Hi?\n\nAssistant: No."},
    ]
    path = write_records(tmp_path, records, ".jsonl")

    assert rejected_errors(path) == [
        (1, "chosen"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "rejected"),
        (5, "chosen"),
    ]


# ---------------------------------------------------------------- ids


def test_ids_are_stable_across_reads_and_file_kinds(tmp_path):
    records = [hh_record(f"\n\nHuman: Q{n}?", f"yes {n}", f"no {n}") for n in range(4)]
    jsonl_ids = read_dataset(write_records(tmp_path, records, ".jsonl")).ids

    assert read_dataset(tmp_path / "pairs.jsonl").ids == jsonl_ids
    assert read_dataset(write_records(tmp_path, records, ".parquet")).ids == jsonl_ids
    assert len(set(jsonl_ids)) == 4


def test_plain_without_id_column_derives_the_content_id(tmp_path):
    record = {"prompt": "q", "response_a": "a", "response_b": "b"}
    path = write_records(tmp_path, [record], ".jsonl")

    [instance] = read_dataset(path).instances

    assert instance.id == stable_id("q", "a", "b")
    assert instance.labels == {} and instance.judge_confidence is None


# ---------------------------------------------------------------- row errors


def test_a_response_a_loader_parsed_as_a_boolean_or_number_is_read_as_its_text_with_a_note(tmp_path):
    """Real exports hold `true` where a model answered "True" (six rows of PandaLM's test set)."""
    lines = [json.dumps(plain_record("p1") | {"response_a": True}),
             json.dumps(plain_record("p2")),
             json.dumps(plain_record("p3") | {"response_b": 42})]
    dataset = read_dataset(write_lines(tmp_path / "pairs.jsonl", lines))
    assert [i.response_a for i in dataset.instances][0] == "True"
    assert dataset.instances[2].response_b == "42"
    assert dataset.notes == ["row 1: field 'response_a': the JSON bool true was read as the text 'True'",
                             "row 3: field 'response_b': the JSON int 42 was read as the text '42'"]


def test_the_shared_pandalm_and_mt_bench_files_read_as_they_are():
    pandalm = read_dataset(DATA / "pandalm-testset.jsonl.gz")
    assert len(pandalm) == 999 and len(pandalm.notes) == 6
    assert {"annotator1", "gpt-3.5-turbo", "pandalm-7b"} <= set(pandalm.instances[0].labels)
    mt_bench = read_dataset(DATA / "llmbar-mtbench.jsonl.gz")
    assert len(mt_bench) == 200 and "gpt-4_swapped" in mt_bench.instances[0].labels


def test_bad_rows_are_all_reported_with_line_and_field_and_refuse_the_file(tmp_path):
    lines = [
        json.dumps(plain_record("p1")),
        json.dumps(plain_record("p2", label="B")),
        json.dumps({k: v for k, v in plain_record("p3").items() if k != "prompt"}),
        "",
        '{"id": "p5", "prompt": ',
        json.dumps(plain_record("p6", label="maybe")),
        json.dumps(plain_record("p1")),
        json.dumps(["not", "an", "object"]),
        json.dumps(plain_record("p9") | {"response_b": ["not", "text"]}),
        json.dumps(plain_record("p10") | {"judge_confidence": 1.5}),
        json.dumps(plain_record("p11")),
    ]
    path = write_lines(tmp_path / "pairs.jsonl", lines)

    with pytest.raises(DatasetRejected) as caught:
        read_dataset(path)

    found = [(error.row, error.field) for error in caught.value.errors]
    assert found == [
        (3, "prompt"),
        (5, "line"),
        (6, "label_human"),
        (7, "id"),
        (8, "line"),
        (9, "response_b"),
        (10, "judge_confidence"),
    ]
    message = str(caught.value)
    assert "7 bad row(s)" in message
    for row, field in found:
        assert f"row {row}: field '{field}'" in message
    assert "duplicate id 'p1' (first on row 1)" in message


def test_skip_bad_rows_keeps_the_good_rows_and_counts_the_rest(tmp_path):
    lines = [
        json.dumps(plain_record("p1")),
        "not json",
        json.dumps(plain_record("p3", label="C")),
        json.dumps(plain_record("p1")),
        json.dumps(plain_record("p5", label="b")),
    ]
    path = write_lines(tmp_path / "pairs.jsonl.gz", lines)

    dataset = read_dataset(path, skip_bad_rows=True)

    assert dataset.ids == ["p1", "p5"]
    assert dataset.n_skipped == 3
    assert [instance.labels["human"] for instance in dataset.instances] == ["A", "B"]


@pytest.mark.parametrize("confidence", [1.5, -0.1, "high", True, float("nan")])
def test_judge_confidence_not_a_number_in_unit_interval_is_a_bad_row(tmp_path, confidence):
    record = plain_record("p1") | {"judge_confidence": confidence}
    path = write_records(tmp_path, [record], ".jsonl")

    assert rejected_errors(path) == [(1, "judge_confidence")]


def test_multipref_raw_annotation_errors_name_the_list_entry(tmp_path):
    base = SAMPLES["multipref-raw"][0]
    records = [
        base | {"comparison_id": "c1", "expert_worker_annotations": [annotation("Tie"), {}]},
        base | {"comparison_id": "c2", "normal_worker_annotations": [annotation("A-wins")]},
        base | {"comparison_id": "c3", "expert_worker_annotations": "Tie"},
    ]
    path = write_records(tmp_path, records, ".jsonl")

    assert rejected_errors(path) == [
        (1, "expert_worker_annotations[1].overall_pref"),
        (2, "normal_worker_annotations[0].overall_pref"),
        (3, "expert_worker_annotations"),
    ]


def test_multipref_raw_majority_vote_and_optional_lists(tmp_path):
    base = {k: v for k, v in SAMPLES["multipref-raw"][0].items() if "annotations" not in k}
    split_normal = [annotation("A-is-clearly-better"), annotation("B-is-slightly-better")]
    records = [
        base
        | {
            "comparison_id": "split",
            "normal_worker_annotations": split_normal,
            "expert_worker_annotations": [annotation("B-is-clearly-better")],
        },
        base | {"comparison_id": "experts-only", "expert_worker_annotations": [annotation("Tie")]},
        base | {"comparison_id": "unlabelled", "normal_worker_annotations": []},
    ]
    path = write_records(tmp_path, records, ".jsonl")

    labels = {instance.id: instance.labels for instance in read_dataset(path).instances}

    assert labels == {
        "split": {"normal": "tie", "expert": "B", "human": "B"},
        "experts-only": {"expert": "tie", "human": "tie"},
        "unlabelled": {},
    }


def test_multipref_features_accepts_text_for_prompt_and_null_labels(tmp_path):
    pair = {"completion_a": "a", "completion_b": "b"}
    records = [
        pair | {"id": "f1", "text": "Q?", "pref_human": "Tie", "pref_gpt4": None},
        pair | {"id": "f2", "text": "Q2?", "pref_human": "B", "pref_gpt4": "A-is-clearly-better"},
    ]
    path = write_records(tmp_path, records, ".parquet")

    instances = read_dataset(path).instances

    assert [(i.prompt, i.labels) for i in instances] == [
        ("Q?", {"human": "tie"}),
        ("Q2?", {"human": "B", "ai": "A"}),
    ]


# ---------------------------------------------------------------- column remapping


def test_columns_remap_file_columns_and_errors_name_the_file_column(tmp_path):
    columns = {
        "prompt": "question",
        "response_a": "answer1",
        "response_b": "answer2",
        "label_human": "vote",
    }
    file_row = {"answer1": "x", "answer2": "y", "vote": "B"}
    records = [
        # A file column named like a remapped field is not that field once it is remapped.
        file_row | {"id": "r1", "question": "Q?", "prompt": "stale"},
        file_row | {"id": "r2", "question": ""},
    ]
    path = write_records(tmp_path, records, ".parquet")

    assert rejected_errors(path, columns=columns) == [(2, "question")]
    [instance] = read_dataset(path, columns=columns, skip_bad_rows=True).instances
    assert (instance.prompt, instance.response_a, instance.labels) == ("Q?", "x", {"human": "B"})


def test_columns_naming_fields_the_format_lacks_are_an_argument_error(tmp_path):
    path = write_records(tmp_path, [plain_record("p1")], ".jsonl")

    for columns in ({"question": "prompt"}, {"prompt": "id", "response_a": "id"}):
        with pytest.raises(InvalidArgument) as caught:
            read_dataset(path, columns=columns)
        assert caught.value.field == "columns"
    with pytest.raises(InvalidArgument):
        read_dataset(path, format="hh-rlhf", columns={"prompt": "question"})


# ---------------------------------------------------------------- arguments and files


def test_missing_file_unknown_extension_and_unknown_format(tmp_path):
    with pytest.raises(NotFound):
        read_dataset(tmp_path / "absent.jsonl")
    with pytest.raises(InvalidArgument) as caught:
        read_dataset(tmp_path / "pairs.csv")
    assert caught.value.field == "path"
    with pytest.raises(InvalidArgument) as caught:
        read_dataset(tmp_path / "absent.jsonl", format="alpaca")
    assert caught.value.field == "format"


def test_unreadable_file_is_an_argument_error_on_its_path(tmp_path):
    (tmp_path / "pairs.parquet").write_text("not parquet")

    with pytest.raises(InvalidArgument) as caught:
        read_dataset(tmp_path / "pairs.parquet")

    assert caught.value.field == "path"


def test_unrecognised_columns_report_the_first_record_row(tmp_path):
    path = write_lines(tmp_path / "pairs.jsonl", ["", "{broken", json.dumps({"question": "q"})])

    with pytest.raises(InvalidInstance) as caught:
        read_dataset(path)

    assert (caught.value.row, caught.value.field) == (3, "format")


# ---------------------------------------------------------------- the bundled real data


def test_bundled_hh_rlhf_harmless_test_split_reads_whole():
    dataset = read_dataset(HH_HARMLESS_TEST)

    assert len(dataset) == 2312 and dataset.n_skipped == 0
    assert len(set(dataset.ids)) == 2312
    assert all(instance.prompt.startswith("Human:") for instance in dataset.instances)
    last_turns = [instance.prompt.rsplit("Assistant:", 1)[-1] for instance in dataset.instances]
    assert all("Human:" in turn for turn in last_turns)
    positions = [instance.labels["human"] for instance in dataset.instances]
    assert 0.4 < positions.count("A") / len(positions) < 0.6


def test_an_empty_response_is_data_not_an_error(tmp_path):
    path = write_records(tmp_path, [plain_record("p1") | {"response_a": ""}], ".jsonl")

    [instance] = read_dataset(path).instances

    assert instance.response_a == ""
