"""Route results: what GetRoute and ListAssignments return later, after a restart too, and from
any replica when they share a database. A route is its summary (the RouteResult without its
assignments) and its assignments (one per pair, in dataset order, served a page at a time; a
page token is the offset of the page's first assignment). Two stores keep them, chosen at
start-up (`services/router/hyper_router/server.py: route_store`):

- `FileRouteStore` (the embedded default, one process): a pair of files per route id, both
  written atomically. `<id>.parquet` holds the assignments (row groups of a page's maximum
  size), `<id>.json` the summary; the JSON is written last, so a route exists once both are
  complete. Routes persisted before the assignments moved to Parquet keep them inside their
  JSON and are paged from there.
- `PostgresRouteStore` (replicas share it): rows of `routes` and `route_assignments`
  (migration 0002), written in one transaction.

Routes are deleted by id (DeleteRoute) or, past the retention period
(HYPER_ROUTE_RETENTION_DAYS), by `expire`: in both stores a route's summary goes first, so a
reader finds the whole route or none of it.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

from hyper.api.messages import MAX_PAGE, ROUTE_ID, Assignment, RouteResult
from hyper.api.proto_convert import route_result_from_json
from hyper.core.atomic_files import atomic_open, write_text_atomic
from hyper.core.errors import InvalidArgument, NotFound
from hyper.infra.database import Database
from hyper_router.routing import AssignmentColumns

DEFAULT_PAGE = 10_000
ALL = 2**62  # a page size for the router's own use (a report reads the whole route)


def page_size(requested: int, field: str) -> int:
    if requested > MAX_PAGE:
        raise InvalidArgument(field, f"{requested} is more than {MAX_PAGE:,} assignments a page")
    return requested or DEFAULT_PAGE


def page_offset(token: str, total: int) -> int:
    if not token:
        return 0
    if not (token.isascii() and token.isdigit()) or int(token) > total:
        raise InvalidArgument("page_token", f"{token[:40]!r} is not a page token of this route")
    return int(token)


def next_token(offset: int, size: int, total: int) -> str:
    return str(offset + size) if offset + size < total else ""


def checked_route_id(route_id: str) -> str:
    if not ROUTE_ID.fullmatch(route_id):
        raise InvalidArgument("route_id", f"{route_id!r} is not a route id (32 hex digits)")
    return route_id


def not_found(route_id: str) -> NotFound:
    return NotFound(f"no route {route_id}")


def summary_of(route: RouteResult) -> str:
    """The route without its page of assignments, as the JSON text both stores keep."""
    summary = route.model_dump(mode="json", exclude={"assignments", "next_page_token"})
    return json.dumps(summary, indent=1, sort_keys=True)


def assignment_rows(rows: Iterable[tuple[str, str, float, float]]) -> list[Assignment]:
    return [Assignment(id=i, route=r, gain=g, cost=c) for i, r, g, c in rows]


class RouteStore(ABC):
    """The contract of both stores; the checks of ids, tokens and page sizes live here once.
    A backend says how to write a route, read its summary and total, and read a slice."""

    def save(self, route: RouteResult, assignments: AssignmentColumns) -> None:
        """The summary (the route without its page of assignments) and every assignment."""
        self._write(checked_route_id(route.route_id), summary_of(route), assignments)

    def load(self, route_id: str, size: int = DEFAULT_PAGE, token: str = "") -> RouteResult:
        """The route with `size` assignments from `token` (ALL: every one), and the token of the
        next page."""
        route = self._summary(checked_route_id(route_id))
        route.assignments, route.next_page_token, _ = self.page(route_id, token, size)
        return route

    def page(self, route_id: str, token: str, size: int) -> tuple[list[Assignment], str, int]:
        """One page of assignments from `token`, the next page's token, the route's total."""
        total = self._total(checked_route_id(route_id))
        offset = page_offset(token, total)
        size = min(size, total - offset)
        return (self._assignments(route_id, offset, size) if size else []), next_token(offset, size, total), total

    def delete(self, route_id: str) -> None:
        """The route and its assignments; NotFound for an unknown route."""
        if not self._delete(checked_route_id(route_id)):
            raise not_found(route_id)

    @abstractmethod
    def expire(self, older_than_s: float) -> int:
        """Deletes every route saved more than `older_than_s` seconds ago; how many."""

    @abstractmethod
    def _delete(self, route_id: str) -> bool:
        """False when there was no such route."""

    @abstractmethod
    def _write(self, route_id: str, summary: str, assignments: AssignmentColumns) -> None: ...

    @abstractmethod
    def _summary(self, route_id: str) -> RouteResult:
        """The stored summary; NotFound for an unknown route."""

    @abstractmethod
    def _total(self, route_id: str) -> int:
        """How many assignments the route has; NotFound for an unknown route."""

    @abstractmethod
    def _assignments(self, route_id: str, offset: int, size: int) -> list[Assignment]:
        """Assignments offset..offset+size-1, all of which exist."""


class FileRouteStore(RouteStore):
    """<home>/routes/<id>.parquet and <id>.json (the module's docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root) / "routes"

    def _write(self, route_id: str, summary: str, assignments: AssignmentColumns) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.root / f"{route_id}.parquet", "wb") as out:
            pq.write_table(assignments.table(), out, row_group_size=MAX_PAGE)
        write_text_atomic(self.root / f"{route_id}.json", summary)

    def _delete(self, route_id: str) -> bool:
        summary = self.root / f"{route_id}.json"
        existed = summary.is_file()
        summary.unlink(missing_ok=True)  # first: from here on the route is not found
        (self.root / f"{route_id}.parquet").unlink(missing_ok=True)
        return existed

    def expire(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        old = [path.stem for path in self.root.glob("*.json") if path.stat().st_mtime < cutoff] \
            if self.root.is_dir() else []
        return sum(self._delete(route_id) for route_id in old)

    def _summary(self, route_id: str) -> RouteResult:
        path = self.root / f"{route_id}.json"
        if not path.is_file():
            raise not_found(route_id)
        return route_result_from_json(path.read_text())

    def _parquet(self, route_id: str) -> pq.ParquetFile | None:
        """The route's assignments; None for a route persisted before Parquet (its JSON holds them)."""
        path = self.root / f"{route_id}.parquet"
        return pq.ParquetFile(path) if path.is_file() else None

    def _total(self, route_id: str) -> int:
        file = self._parquet(route_id)
        return file.metadata.num_rows if file else len(self._summary(route_id).assignments)

    def _assignments(self, route_id: str, offset: int, size: int) -> list[Assignment]:
        file = self._parquet(route_id)
        if file is None:
            return self._summary(route_id).assignments[offset:offset + size]
        first, last = offset // MAX_PAGE, (offset + size - 1) // MAX_PAGE
        rows = file.read_row_groups(list(range(first, last + 1))).slice(offset - first * MAX_PAGE, size).to_pydict()
        return assignment_rows(zip(rows["id"], rows["route"], rows["gain"], rows["cost"], strict=True))


_COPY_ASSIGNMENTS = "COPY route_assignments (route_key, position, id, route, gain, cost) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["int8", "int8", "text", "text", "float8", "float8"]
# The key as a scalar subquery, not a join: the planner then walks the primary key's index in
# order from the offset (a join had it sort every row after the offset to return ten).
_READ_PAGE = ("SELECT id, route, gain, cost FROM route_assignments "
              "WHERE route_key = (SELECT route_key FROM routes WHERE route_id = %s) AND position >= %s "
              "ORDER BY position LIMIT %s")


class PostgresRouteStore(RouteStore):
    """Rows of routes and route_assignments (migration 0002). A route's summary row and all of
    its assignments are one transaction: no reader, on any replica, sees part of a route."""

    def __init__(self, database: Database):
        self.database = database

    def _write(self, route_id: str, summary: str, assignments: AssignmentColumns) -> None:
        with self.database.connection() as connection:
            [key] = connection.execute("INSERT INTO routes (route_id, summary, n_assignments) VALUES (%s, %s, %s) "
                                       "RETURNING route_key", [route_id, summary, len(assignments.ids)]).fetchall()
            # COPY, not INSERTs: a route may hold millions of assignments.
            with connection.cursor() as cursor, cursor.copy(_COPY_ASSIGNMENTS) as copy:
                copy.set_types(_COPY_TYPES)
                for position, row in enumerate(assignments.rows()):
                    copy.write_row((key[0], position, *row))

    def _delete(self, route_id: str) -> bool:
        with self.database.connection() as connection:
            keys = connection.execute("DELETE FROM routes WHERE route_id = %s RETURNING route_key",
                                      [route_id]).fetchall()
            self._delete_assignments(connection, keys)
        return bool(keys)

    def expire(self, older_than_s: float) -> int:
        with self.database.connection() as connection:
            keys = connection.execute("DELETE FROM routes WHERE created_at < now() - make_interval(secs => %s) "
                                      "RETURNING route_key", [older_than_s]).fetchall()
            self._delete_assignments(connection, keys)
        return len(keys)

    @staticmethod
    def _delete_assignments(connection, keys: list[tuple]) -> None:
        """In the transaction that deleted their routes' rows: nobody sees assignments without a
        route, or a route without them."""
        if keys:
            connection.execute("DELETE FROM route_assignments WHERE route_key = ANY(%s)", [[k for (k,) in keys]])

    def _route_row(self, query: str, route_id: str) -> tuple:
        with self.database.connection() as connection:
            row = connection.execute(query, [route_id]).fetchone()
        if row is None:
            raise not_found(route_id)
        return row

    def _summary(self, route_id: str) -> RouteResult:
        return route_result_from_json(self._route_row("SELECT summary FROM routes WHERE route_id = %s", route_id)[0])

    def _total(self, route_id: str) -> int:
        return int(self._route_row("SELECT n_assignments FROM routes WHERE route_id = %s", route_id)[0])

    def _assignments(self, route_id: str, offset: int, size: int) -> list[Assignment]:
        with self.database.connection() as connection:
            return assignment_rows(connection.execute(_READ_PAGE, [route_id, offset, size]).fetchall())
