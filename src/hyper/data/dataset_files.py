"""Reading dataset files (JSONL, JSONL.gz, Parquet) into validated Datasets.

Apart from `hyper.data.ingest` (which validates records, wherever they come from) because only the
parts that read files need it: the router, the CLI and the training Jobs. Services that take
instances over gRPC (the tagger, ppm) never reach pyarrow.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator, Mapping
from itertools import chain
from pathlib import Path

from hyper.core.errors import InvalidArgument, InvalidInstance, NotFound
from hyper.core.schema import Dataset, DatasetRef
from hyper.data.ingest import ReadChunk, parse_records

# A longer line is a bad row, read past in pieces: one huge line must not take the memory.
MAX_LINE_BYTES = 64 * 2**20


def _lines(handle) -> Iterator[bytes | None]:
    """The file's lines; None in place of a line longer than MAX_LINE_BYTES."""
    while line := handle.readline(MAX_LINE_BYTES + 1):
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = handle.readline(MAX_LINE_BYTES)
        yield None


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict | InvalidInstance]]:
    """(line number, object) per non-blank line; a bad line yields its error in its place."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as lines:
        for line_number, line in enumerate(_lines(lines), start=1):
            if line is None:
                reason = f"longer than {MAX_LINE_BYTES // 2**20} MiB: not read"
                yield line_number, InvalidInstance(line_number, "line", reason)
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:  # JSONDecodeError and UnicodeDecodeError both
                yield line_number, InvalidInstance(line_number, "line", f"not valid JSON: {error}")
                continue
            if not isinstance(record, dict):
                reason = f"expected a JSON object, got {type(record).__name__}"
                record = InvalidInstance(line_number, "line", reason)
            yield line_number, record


def _parquet_records(path: Path) -> Iterator[tuple[int, dict]]:
    # pyarrow only where Parquet is read (the router, the CLI): the other images skip 170 MB.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # to_pylist gives nested lists as Python lists of dicts, never numpy arrays.
        batches = pq.ParquetFile(path).iter_batches()
        yield from enumerate(chain.from_iterable(batch.to_pylist() for batch in batches), start=1)
    except pa.ArrowException as error:
        raise OSError(str(error)) from error


_RECORD_READERS = {
    ".jsonl": _jsonl_records,
    ".json": _jsonl_records,
    ".jsonl.gz": _jsonl_records,
    ".json.gz": _jsonl_records,
    ".parquet": _parquet_records,
}


def _records(path: Path) -> Iterator[tuple[int, dict | InvalidInstance]]:
    """The file's records; an unreadable file (corrupt gzip, not Parquet) is one argument error."""
    name = path.name.lower()
    reader = next((r for suffix, r in _RECORD_READERS.items() if name.endswith(suffix)), None)
    if reader is None:
        raise InvalidArgument("path", f"{path}: expected one of {sorted(_RECORD_READERS)}")
    if not path.is_file():
        raise NotFound(f"{path}: no such file")
    try:
        yield from reader(path)
    except (OSError, EOFError) as error:
        raise InvalidArgument("path", f"{path}: the file could not be read: {error}") from error


def read_dataset(
    path: str | Path,
    format: str = "auto",
    columns: Mapping[str, str] | None = None,
    skip_bad_rows: bool = False,
    on_chunk: Callable[[ReadChunk], None] | None = None,
) -> Dataset:
    """Every valid pair of the file; bad rows refuse the file unless `skip_bad_rows` drops them.

    `columns` maps a format's field name to the file's column holding it, e.g.
    {"prompt": "question"}; errors then name the file's column ("question"). The file is
    read as a stream (JSONL by line, Parquet by row group); `on_chunk` sees the instances in
    chunks as they are read (see ingest.parse_records), and may see a pair twice: a plain file
    is read by columns first (hyper.data.columnar, several times faster), and by rows, from the
    start, if a row needs the row reader's errors or notes.
    """
    path = Path(path)
    if not columns and format in ("auto", "plain") and path.name.lower().endswith(tuple(_RECORD_READERS)):
        from hyper.data import columnar  # (pyarrow: see the module's docstring)

        try:
            return Dataset(columnar.read(path, on_chunk), source=str(path), format="plain")
        except columnar.NotColumnar:
            pass
    return parse_records(_records(path), format, columns, skip_bad_rows, str(path), on_chunk)


def check_under_roots(path: str, roots: tuple[Path, ...]) -> None:
    """Refuses a path that resolves (symlinks followed) outside every allowed root: a request
    names a dataset, not an arbitrary file of the server."""
    if not path:
        raise InvalidArgument("dataset.ref.path", "is empty")
    if "\x00" in path:
        raise InvalidArgument("dataset.ref.path", "contains a NUL character")
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots) or "none"
        raise InvalidArgument("dataset.ref.path", f"{path} is outside the server's data roots ({allowed}); "
                                                  "put the file under one or set HYPER_DATA_ROOTS")


def parse_columns(pairs: list[str]) -> dict[str, str]:
    """--column FIELD=COLUMN flags as the `columns` mapping of read_dataset."""
    columns = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise InvalidArgument("--column", f"{pair!r} is not FIELD=COLUMN")
        columns[field] = column
    return columns


def read_dataset_ref(ref: DatasetRef, on_chunk: Callable[[ReadChunk], None] | None = None
                     ) -> Dataset:
    if not ref.path:
        raise InvalidArgument("dataset.ref.path", "is empty")
    return read_dataset(ref.path, ref.format, dict(ref.columns) or None, ref.skip_bad_rows, on_chunk)
