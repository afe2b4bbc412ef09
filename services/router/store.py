"""Route results as JSON files, one per route id, written atomically: what GetRoute returns
later, after a restart too."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format

from hyper import wire
from hyper.atomic import write_json_atomic
from hyper.errors import InvalidArgument, NotFound
from hyper.routed import ROUTE_ID
from hyper.v1 import router_pb2


class RouteStore:
    def __init__(self, root: Path):
        self.root = Path(root) / "routes"

    def save(self, response: router_pb2.RouteResponse) -> None:
        write_json_atomic(self.root / f"{response.route_id}.json", wire.message_to_dict(response))

    def load(self, route_id: str) -> router_pb2.RouteResponse:
        if not ROUTE_ID.match(route_id):
            raise InvalidArgument("route_id", f"{route_id!r} is not a route id (32 hex digits)")
        path = self.root / f"{route_id}.json"
        if not path.is_file():
            raise NotFound(f"no route {route_id}")
        return json_format.ParseDict(json.loads(path.read_text()), router_pb2.RouteResponse())
