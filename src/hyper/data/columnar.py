"""A fast path for large plain-format files: read by columns (Arrow's multi-threaded JSON and
Parquet readers), validated a column at a time, content keys hashed from the joined text.

It takes a file only when every row is one the row reader (`ingest.parse_records`) accepts as it
is: the plain format with no remapped columns, every value of the type the row reader wants, no
duplicate id, no value coerced. Anything else raises NotColumnar and the row reader reads the
file, so every error and note, with its row and field, comes from one place. The instances are
identical to the row reader's (tests/unit/test_columnar_reads.py compares them, with the
content keys, on valid and invalid files).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from hyper.core.schema import STABLE_ID_LENGTH, STABLE_ID_SEPARATOR, Instance, normalize_label
from hyper.core.threads import collection_paused, read_ahead
from hyper.data.ingest import ReadChunk

PLAIN_ONLY = frozenset({"chosen", "rejected", "comparison_id", "pref_human", "pref_gpt4"})
TEXT = ("prompt", "response_a", "response_b")
LABEL_PREFIX, COST_PREFIX = "label_", "cost_"
JSON_BLOCK_BYTES = 16 * 2**20
PARQUET_BATCH_ROWS = 10_000
# The row reader refuses a line over 64 MiB; the fast path leaves any row near that to it (a
# UTF-8 byte may take up to 6 as a JSON escape).
MAX_ROW_BYTES = 64 * 2**20 // 6 - 2**16


class NotColumnar(Exception):
    """This file (or a row of it) needs the row reader."""


def batches(path: Path) -> Iterator[pa.RecordBatch]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        yield from pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS)
        return
    stream = pa.input_stream(str(path), compression="gzip" if name.endswith(".gz") else None)
    yield from pa_json.open_json(stream, read_options=pa_json.ReadOptions(block_size=JSON_BLOCK_BYTES))


def _is_text(column: pa.Array) -> bool:
    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def _is_number(column: pa.Array) -> bool:
    return pa.types.is_integer(column.type) or pa.types.is_floating(column.type)


@functools.cache
def blank_pattern() -> str:
    """A whole value of what str.strip removes (blank to the row reader): Python's whitespace,
    the ASCII separators \\x1c-\\x1f among it, which are not Unicode whitespace."""
    whitespace = "".join(f"\\x{{{c:x}}}" for c in range(0x110000) if chr(c).isspace())
    return f"^[{whitespace}]*$"


def _check_not_blank(column: pa.Array) -> None:
    if pc.any(pc.match_substring_regex(column, blank_pattern())).as_py():
        raise NotColumnar("a blank value")


def _check_text(batch: pa.RecordBatch, name: str) -> None:
    """A required text column: text in every row."""
    if name not in batch.schema.names:
        raise NotColumnar(f"no {name} column")
    column = batch.column(name)
    if not _is_text(column) or column.null_count:
        raise NotColumnar(f"{name}: not text in every row")


def _optional_text(batch: pa.RecordBatch, name: str) -> list[str | None]:
    column = batch.column(name) if name in batch.schema.names else None
    if column is None or pa.types.is_null(column.type):
        return [None] * batch.num_rows
    if not _is_text(column):
        raise NotColumnar(f"{name}: not text")
    return column.to_pylist()


def _ids(batch: pa.RecordBatch, keys: list[str]) -> list[str]:
    if "id" not in batch.schema.names:
        return keys
    column = batch.column("id")
    if column.null_count:  # null and absent differ for the row reader; Arrow cannot tell them apart
        raise NotColumnar("id: null or absent in some row")
    if pa.types.is_integer(column.type):
        return [str(value) for value in column.to_pylist()]
    if not _is_text(column):
        raise NotColumnar("id: neither text nor integer")
    _check_not_blank(column)
    return column.to_pylist()


def _labels(batch: pa.RecordBatch) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = [{} for _ in range(batch.num_rows)]
    for name in batch.schema.names:
        if not name.startswith(LABEL_PREFIX) or name == LABEL_PREFIX:
            continue
        column = batch.column(name)
        if pa.types.is_null(column.type):
            continue
        if not _is_text(column):
            raise NotColumnar(f"{name}: not text")
        canonical: dict[str, str] = {}
        for value in pc.unique(column.drop_null()).to_pylist():
            label = normalize_label(value)
            if label is None:
                raise NotColumnar(f"{name}: an unknown label")
            canonical[value] = label
        source = name.removeprefix(LABEL_PREFIX)
        for row, value in zip(rows, column.to_pylist(), strict=True):
            if value is not None:
                row[source] = canonical[value]
    return rows


def _numbers(batch: pa.RecordBatch, name: str, valid: Callable[[pa.Array], pa.Array]) -> list[float | None] | None:
    column = batch.column(name)
    if pa.types.is_null(column.type):
        return None
    if not _is_number(column):
        raise NotColumnar(f"{name}: not a number")
    as_float = pc.cast(column, pa.float64())
    if not pc.all(valid(as_float)).as_py():  # (all() skips nulls; NaN fails every comparison)
        raise NotColumnar(f"{name}: a value out of range")
    return as_float.to_pylist()


def _costs(batch: pa.RecordBatch) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = [{} for _ in range(batch.num_rows)]
    for name in batch.schema.names:
        if not name.startswith(COST_PREFIX):
            continue
        values = _numbers(batch, name, lambda c: pc.and_(pc.greater(c, 0), pc.is_finite(c)))
        for row, value in zip(rows, values or (), strict=False):
            if value is not None:
                row[name.removeprefix(COST_PREFIX)] = value
    return rows


def _confidences(batch: pa.RecordBatch) -> list[float | None]:
    if "judge_confidence" in batch.schema.names:
        values = _numbers(batch, "judge_confidence",
                          lambda c: pc.and_(pc.greater_equal(c, 0), pc.less_equal(c, 1)))
        if values is not None:
            return values
    return [None] * batch.num_rows


def content_keys(batch: pa.RecordBatch) -> list[str]:
    """Every row's content key, stable_id(prompt, response_a, response_b), hashed from the joined
    UTF-8 bytes where Arrow holds them (no Python string is made of the text)."""
    joined = pc.binary_join_element_wise(*(batch.column(name) for name in TEXT), STABLE_ID_SEPARATOR)
    offsets_type = np.int64 if pa.types.is_large_string(joined.type) else np.int32
    offsets = np.frombuffer(joined.buffers()[1], dtype=offsets_type)[joined.offset:joined.offset + len(joined) + 1]
    data, bounds, sha256 = memoryview(joined.buffers()[2] or b""), offsets.tolist(), hashlib.sha256
    return [sha256(data[bounds[k]:bounds[k + 1]]).hexdigest()[:STABLE_ID_LENGTH] for k in range(len(joined))]


def _check_batch(batch: pa.RecordBatch) -> None:
    # Arrow's JSON reader takes invalid UTF-8 as it is; Python's json refuses the line.
    batch.validate(full=True)
    names = set(batch.schema.names)
    if names & PLAIN_ONLY or "response_a" not in names:
        raise NotColumnar("not the plain format")
    lengths = functools.reduce(pc.add, [pc.binary_length(batch.column(name)) for name in TEXT if name in names])
    if pc.max(lengths).as_py() > MAX_ROW_BYTES:
        raise NotColumnar("a row near the line limit")


def instances(batch: pa.RecordBatch, seen_ids: set[str], keep_text: bool) -> list[Instance]:
    """The batch's instances, each with its content key (and without its text unless asked);
    NotColumnar where the row reader must read the file."""
    _check_batch(batch)
    for name in TEXT:
        _check_text(batch, name)
    _check_not_blank(batch.column("prompt"))
    keys = content_keys(batch)
    ids = _ids(batch, keys)
    before = len(seen_ids)
    seen_ids.update(ids)
    if len(seen_ids) - before != len(ids):
        raise NotColumnar("a duplicate id")
    rest = zip(_labels(batch), _confidences(batch), _costs(batch), _optional_text(batch, "subset"), keys,
               strict=True)
    if keep_text:
        texts = (batch.column(name).to_pylist() for name in TEXT)
        return [Instance(i, p, a, b, labels, confidence, costs, subset or "") for i, p, a, b, (
            labels, confidence, costs, subset, _) in zip(ids, *texts, rest, strict=True)]
    return [Instance(i, "", "", "", labels, confidence, costs, subset or "", key)
            for i, (labels, confidence, costs, subset, key) in zip(ids, rest, strict=True)]


def read(path: Path, on_chunk: Callable[[ReadChunk], None] | None) -> list[Instance]:
    """Every instance of a plain file; with `on_chunk`, kept without text and handed over a batch
    at a time as ingest.parse_records does. NotColumnar when the file needs the row reader."""
    try:
        kept = _read_batches(path, on_chunk)
    except (pa.ArrowException, OSError) as error:  # a line Arrow's reader does not take; no such file
        raise NotColumnar(str(error)) from error
    finally:  # Arrow's allocator keeps what the parsed blocks held; what comes next needs the room
        pa.default_memory_pool().release_unused()
    if not kept:
        raise NotColumnar("no rows")
    return kept


def _read_batches(path: Path, on_chunk: Callable[[ReadChunk], None] | None) -> list[Instance]:
    kept: list[Instance] = []
    seen_ids: set[str] = set()
    for batch in read_ahead(batches(path)):
        if not batch.num_rows:
            continue
        with collection_paused():  # (not while on_chunk waits on the tagger: that may take hours)
            fresh = instances(batch, seen_ids, keep_text=on_chunk is None)
        if on_chunk:
            on_chunk(ReadChunk(len(kept), fresh, functools.partial(_whole, batch, fresh)))
        kept += fresh
    return kept


def _whole(batch: pa.RecordBatch, kept: list[Instance], rows: list[int]) -> list[Instance]:
    """Some of a batch's instances with their text."""
    taken = batch.take(pa.array(rows, type=pa.int64()))
    texts = zip(*(taken.column(name).to_pylist() for name in TEXT), strict=True)
    return [dataclasses.replace(kept[k], prompt=p, response_a=a, response_b=b, text_key="")
            for k, (p, a, b) in zip(rows, texts, strict=True)]
