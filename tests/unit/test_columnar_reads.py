"""The columnar fast path reads exactly what the row reader reads: the same instances and
content keys for a file it takes, and every file it cannot vouch for left to the row reader, whose
errors and notes (row and field) are then what the user sees."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hyper.core.errors import DatasetRejected
from hyper.data import columnar, dataset_files, ingest

VALID = {
    "string ids, labels in every spelling, costs, confidences, subsets": [
        {"id": "p1", "prompt": "Explain tides.", "response_a": "The moon.", "response_b": "Wind.",
         "label_human": "a", "label_ai": "Tie", "cost_human": 2, "cost_ai": 0.5, "judge_confidence": 1,
         "subset": "chat", "extra": {"nested": [1, 2]}},
        {"id": "p2", "prompt": "  Name a colour.\n", "response_a": "", "response_b": "Blue 😀 \u00e9",
         "label_human": "B-is-slightly-better", "label_ai": None, "cost_human": None, "judge_confidence": 0.25,
         "subset": None, "extra": None},
        {"id": "p3", "prompt": "Why?", "response_a": "Because.", "response_b": "\x1c", "label_": "A"},
    ],
    "content-derived ids": [
        {"prompt": "Q1", "response_a": "a", "response_b": "b", "label_human": "A"},
        {"prompt": "Q2", "response_a": "a", "response_b": "b", "label_human": "B"},
    ],
    "integer ids": [
        {"id": 7, "prompt": "Q1", "response_a": "a", "response_b": "b"},
        {"id": -3, "prompt": "Q2", "response_a": "a", "response_b": "b"},
    ],
}
# Rows the row reader refuses or notes: each file must fall to it, with its errors unchanged.
ROW_READER = {
    "a missing prompt": {"response_a": "a", "response_b": "b"},
    "a null response": {"prompt": "Q", "response_a": None, "response_b": "b"},
    "a boolean response (a note)": {"prompt": "Q", "response_a": True, "response_b": "b"},
    "a blank prompt": {"prompt": "   ", "response_a": "a", "response_b": "b"},
    "a prompt Python sees as blank": {"prompt": "\x1c\x1d", "response_a": "a", "response_b": "b"},
    "a lone surrogate": {"prompt": "Q\ud800", "response_a": "a", "response_b": "b"},
    "an unknown label": {"prompt": "Q", "response_a": "a", "response_b": "b", "label_human": "C"},
    "a label that is a number": {"prompt": "Q", "response_a": "a", "response_b": "b", "label_human": 1},
    "a zero cost": {"prompt": "Q", "response_a": "a", "response_b": "b", "cost_human": 0},
    "a confidence above 1": {"prompt": "Q", "response_a": "a", "response_b": "b", "judge_confidence": 1.5},
    "a confidence that is text": {"prompt": "Q", "response_a": "a", "response_b": "b", "judge_confidence": "high"},
    "a boolean confidence": {"prompt": "Q", "response_a": "a", "response_b": "b", "judge_confidence": True},
    "a nested prompt": {"prompt": {"text": "Q"}, "response_a": "a", "response_b": "b"},
    "a blank id": {"id": " ", "prompt": "Q", "response_a": "a", "response_b": "b"},
    "a null id": {"id": None, "prompt": "Q", "response_a": "a", "response_b": "b"},
    "a subset that is a number": {"prompt": "Q", "response_a": "a", "response_b": "b", "subset": 3},
    "another format's column": {"prompt": "Q", "response_a": "a", "response_b": "b", "chosen": "x"},
}
RAW_LINES = {
    "not JSON": b'{"prompt": "Q", "response_a": "a",\n',
    "not an object": b'["Q", "a", "b"]\n',
    "a key twice": b'{"prompt": "Q", "prompt": "R", "response_a": "a", "response_b": "b"}\n',
    "NaN confidence": b'{"prompt": "Q", "response_a": "a", "response_b": "b", "judge_confidence": NaN}\n',
    "invalid UTF-8": b'{"prompt": "Q\xff", "response_a": "a", "response_b": "b"}\n',
    "invalid UTF-8 in a column no format reads":
        b'{"prompt": "Q", "response_a": "a", "response_b": "b", "x": "\xc3"}\n',
    "a lone low surrogate escape": b'{"prompt": "\\udc00Q", "response_a": "a", "response_b": "b"}\n',
}
GOOD_ROWS = [{"id": f"g{k}", "prompt": f"Question {k}", "response_a": "yes", "response_b": "no", "label_human": "A"}
             for k in range(3)]


def write_jsonl(path: Path, records: list[dict], raw: bytes = b"") -> Path:
    body = b"".join(json.dumps(r).encode() + b"\n" for r in records[:2]) + raw
    body += b"\n" + b"".join(json.dumps(r).encode() + b"\n" for r in records[2:])  # a blank line, counted
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(body))
    else:
        path.write_bytes(body)
    return path


def row_read(path: Path, skip_bad_rows: bool):
    try:
        dataset = ingest.parse_records(dataset_files._records(path), skip_bad_rows=skip_bad_rows, source=str(path))
        return dataset.instances, dataset.notes, dataset.n_skipped, dataset.format
    except DatasetRejected as rejected:
        return rejected.errors


def product_read(path: Path, skip_bad_rows: bool):
    try:
        dataset = dataset_files.read_dataset(path, skip_bad_rows=skip_bad_rows)
        return dataset.instances, dataset.notes, dataset.n_skipped, dataset.format
    except DatasetRejected as rejected:
        return rejected.errors


def without_keys(instances):
    return [i.without_text() for i in instances]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
@pytest.mark.parametrize("case", list(VALID))
def test_a_file_the_fast_path_takes_reads_identically(tmp_path, case, suffix):
    path = write_jsonl(tmp_path / f"pairs{suffix}", VALID[case])
    fast = columnar.read(path, None)  # taken: it does not raise NotColumnar
    instances, notes, skipped, fmt = row_read(path, False)
    assert fast == instances and (notes, skipped, fmt) == ([], 0, "plain")
    assert [i.content_key() for i in fast] == [i.content_key() for i in instances]
    chunks = []
    kept = columnar.read(path, chunks.append)
    assert kept == without_keys(instances) and all(i.prompt == "" for i in kept)
    assert chunks[0].with_text([0, len(instances) - 1]) == [instances[0], instances[-1]]


@pytest.mark.parametrize("skip_bad_rows", [False, True])
@pytest.mark.parametrize("case", list(ROW_READER) + list(RAW_LINES))
def test_a_file_with_a_row_the_row_reader_must_see_reads_as_before(tmp_path, case, skip_bad_rows):
    raw = RAW_LINES.get(case, b"")
    rows = GOOD_ROWS[:2] + ([ROW_READER[case]] if case in ROW_READER else []) + GOOD_ROWS[2:]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows, raw)
    with pytest.raises(columnar.NotColumnar):
        columnar.read(path, None)
    assert product_read(path, skip_bad_rows) == row_read(path, skip_bad_rows)


def test_a_duplicate_id_across_batches_falls_to_the_row_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "JSON_BLOCK_BYTES", 256)  # several batches
    rows = [{"id": f"r{k}", "prompt": f"Q{k}", "response_a": "a", "response_b": "b"} for k in range(40)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows + [dict(rows[0], prompt="other")])
    with pytest.raises(columnar.NotColumnar):
        columnar.read(path, None)
    errors = product_read(path, False)
    assert errors == row_read(path, False) and "duplicate id 'r0'" in str(errors[0])


def test_parquet_reads_identically(tmp_path):
    rows = VALID["string ids, labels in every spelling, costs, confidences, subsets"]
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "extra"} for r in rows])
    path = tmp_path / "pairs.parquet"
    pq.write_table(table, path)
    assert columnar.read(path, None) == row_read(path, False)[0]


def test_the_product_reader_hands_over_chunks_without_text(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", VALID["content-derived ids"])
    chunks = []
    dataset = dataset_files.read_dataset(path, on_chunk=chunks.append)
    assert [i.prompt for i in dataset.instances] == ["", ""]
    assert [c.before for c in chunks] == [0] and chunks[0].with_text([1])[0].prompt == "Q2"
