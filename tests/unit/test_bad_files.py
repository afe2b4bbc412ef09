"""Malformed dataset files are refused with errors naming the row and field (or the file),
never a traceback, whatever is wrong with them."""

import gzip
import json

import pytest

from hyper.core.errors import DatasetRejected, InvalidArgument
from hyper.data import dataset_files

GOOD = {"prompt": "p", "response_a": "a", "response_b": "b"}


def jsonl(*records) -> bytes:
    """One line per record, each made distinct (identical pairs would be duplicate ids)."""
    return b"".join(json.dumps(dict(r, id=f"{k}-{id(r)}")).encode() + b"\n" for k, r in enumerate(records))


def test_a_truncated_gzip_file_is_one_argument_error(tmp_path):
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl(*[GOOD] * 200))[:-40])
    with pytest.raises(InvalidArgument, match="could not be read"):
        dataset_files.read_dataset(path, "plain")


@pytest.mark.parametrize("content, row, field", [
    ("\n".join(json.dumps(GOOD) for _ in range(2)).encode("utf-16"), 1, "line"),  # another encoding
    (jsonl(GOOD) + b'{"prompt": "caf\xe9", "response_a": "a", "response_b": "b"}\n', 2, "line"),  # Latin-1
    (jsonl(GOOD, dict(GOOD, prompt=7)), 2, "prompt"),  # a number where text belongs
    (jsonl(GOOD, dict(GOOD, label_human=["A"])), 2, "label_human"),  # a list where a label belongs
    (jsonl(GOOD, dict(GOOD, label_human="C")), 2, "label_human"),  # a label outside A/B/tie
    (jsonl(GOOD) + b"[1, 2]\n", 2, "line"),
    (jsonl(GOOD) + b'{"prompt": "p", "response_a": "\\ud800", "response_b": "b"}\n', 2, "response_a"),  # no Unicode
])
def test_bad_rows_are_named_by_row_and_field(tmp_path, content, row, field):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DatasetRejected) as refused:
        dataset_files.read_dataset(path, "plain")
    assert any(e.row == row and e.field.startswith(field) for e in refused.value.errors), refused.value


def test_a_line_longer_than_the_limit_is_a_bad_row_read_past_in_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_files, "MAX_LINE_BYTES", 1024)
    path = tmp_path / "long.jsonl"
    path.write_bytes(jsonl(GOOD) + b'{"prompt": "' + b"x" * 5000 + b'"}\n' + jsonl(dict(GOOD, prompt="q")))
    with pytest.raises(DatasetRejected) as refused:
        dataset_files.read_dataset(path, "plain")
    [error] = refused.value.errors
    assert (error.row, error.field) == (2, "line") and "longer than" in error.reason
    assert len(dataset_files.read_dataset(path, "plain", skip_bad_rows=True).instances) == 2
