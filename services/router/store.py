"""Route results, one pair of files per route id, both written atomically: `<id>.parquet` holds
the assignments (one row per pair, row groups of a page's maximum size), `<id>.json` the rest of
the RouteResponse. The JSON is written last, so a route exists once both are complete. What
GetRoute and ListAssignments return later, after a restart too.

Routes persisted before the assignments moved to Parquet keep them inside their JSON and are
paged from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from google.protobuf import json_format

from hyper import wire
from hyper.atomic import atomic_open, write_json_atomic
from hyper.errors import InvalidArgument, NotFound
from hyper.routed import ROUTE_ID
from hyper.v1 import router_pb2

DEFAULT_PAGE = 10_000
MAX_PAGE = 100_000
ALL = 2**62  # a page size for the router's own use (a report reads the whole route)


@dataclass
class AssignmentColumns:
    """A route's assignments as columns, in dataset order."""

    ids: list[str]
    routes: list[str]
    gains: np.ndarray
    costs: np.ndarray

    def table(self) -> pa.Table:
        return pa.table({"id": self.ids, "route": pa.array(self.routes).dictionary_encode(),
                         "gain": self.gains, "cost": self.costs})


def page_size(requested: int, field: str) -> int:
    if requested > MAX_PAGE:
        raise InvalidArgument(field, f"{requested} is more than {MAX_PAGE:,} assignments a page")
    return requested or DEFAULT_PAGE


def page_offset(token: str, total: int) -> int:
    if not token:
        return 0
    if not token.isdigit() or int(token) > total:
        raise InvalidArgument("page_token", f"{token[:40]!r} is not a page token of this route")
    return int(token)


def next_token(offset: int, size: int, total: int) -> str:
    return str(offset + size) if offset + size < total else ""


class RouteStore:
    def __init__(self, root: Path):
        self.root = Path(root) / "routes"

    def save(self, response: router_pb2.RouteResponse, assignments: AssignmentColumns) -> None:
        """The summary (the response without its page of assignments) and every assignment."""
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.root / f"{response.route_id}.parquet", "wb") as out:
            pq.write_table(assignments.table(), out, row_group_size=MAX_PAGE)
        summary = router_pb2.RouteResponse()
        summary.CopyFrom(response)
        del summary.assignments[:]
        summary.next_page_token = ""
        write_json_atomic(self.root / f"{response.route_id}.json", wire.message_to_dict(summary))

    def load(self, route_id: str, size: int = DEFAULT_PAGE) -> router_pb2.RouteResponse:
        """The route with its first `size` assignments (ALL: every one), and the token of the
        next page."""
        route = self._summary(route_id)
        assignments, token, _ = self.page(route_id, "", size, route)
        del route.assignments[:]
        route.assignments.extend(assignments)
        route.next_page_token = token
        return route

    def page(self, route_id: str, token: str, size: int, route: router_pb2.RouteResponse | None = None
             ) -> tuple[list[router_pb2.Assignment], str, int]:
        """One page of assignments from `token`, the next page's token, the route's total."""
        route = route or self._summary(route_id)
        parquet = self.root / f"{route_id}.parquet"
        if not parquet.is_file():  # persisted before Parquet: the JSON holds them all
            offset = page_offset(token, len(route.assignments))
            total = len(route.assignments)
            return list(route.assignments[offset:offset + size]), next_token(offset, size, total), total
        file = pq.ParquetFile(parquet)
        total = file.metadata.num_rows
        offset = page_offset(token, total)
        size = min(size, total - offset)
        first = offset // MAX_PAGE
        groups = list(range(first, (offset + size - 1) // MAX_PAGE + 1)) if size else []
        rows = file.read_row_groups(groups).slice(offset - first * MAX_PAGE, size).to_pydict() if size else {}
        assignments = [router_pb2.Assignment(id=i, route=r, gain=g, cost=c) for i, r, g, c in
                       zip(rows.get("id", []), rows.get("route", []), rows.get("gain", []), rows.get("cost", []),
                           strict=True)]
        return assignments, next_token(offset, size, total), total

    def _summary(self, route_id: str) -> router_pb2.RouteResponse:
        if not ROUTE_ID.match(route_id):
            raise InvalidArgument("route_id", f"{route_id!r} is not a route id (32 hex digits)")
        path = self.root / f"{route_id}.json"
        if not path.is_file():
            raise NotFound(f"no route {route_id}")
        return json_format.ParseDict(json.loads(path.read_text()), router_pb2.RouteResponse())
