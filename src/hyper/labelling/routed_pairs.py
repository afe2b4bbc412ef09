"""A finished route with the pairs it routed: what the hand-off to annotators and the final
export start from. A route comes from the router (GetRoute, by id) or from the JSON file that
`hyper route --out` wrote; its pairs' text from the file it routed (or one the caller names)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from hyper.api.messages import AI, RouteResult, field_path
from hyper.core.errors import InvalidArgument
from hyper.core.schema import Dataset, Instance
from hyper.data import dataset_files


@dataclass(frozen=True)
class RoutedDataset:
    route_id: str
    ai_source: str
    instances: list[Instance]  # in the route's order
    routes: dict[str, str]  # instance id -> a paid source's name or "ai"

    def paid(self) -> list[Instance]:
        """The pairs routed to a paid source (humans), the ones annotators must label."""
        return [i for i in self.instances if self.routes[i.id] != AI]

    def route_of(self, instance_id: str) -> str | None:
        return self.routes.get(instance_id)


def dataset_of(result: RouteResult, data: str = "") -> Dataset:
    """The routed file, or `data` when given (a copy elsewhere, or a route of inline pairs)."""
    if data:
        return dataset_files.read_dataset(data)
    if result.dataset_ref is None:
        raise InvalidArgument("--data", f"route {result.route_id} was given its pairs inline: name the "
                                        "file that holds them")
    return dataset_files.read_dataset_ref(result.dataset_ref.to_dataset_ref())


def routed_dataset(result: RouteResult, dataset: Dataset, ai_source: str = "") -> RoutedDataset:
    """The route joined with its pairs; every routed id must be in the data. The judge's label
    source is the route's unless `ai_source` names another."""
    by_id = {i.id: i for i in dataset.instances}
    missing = [a.id for a in result.assignments if a.id not in by_id]
    if missing:
        raise InvalidArgument("--data", f"{len(missing)} routed ids are not in {dataset.source or 'the data'} "
                                        f"(first: {missing[0]!r}): is it the file that was routed?")
    return RoutedDataset(result.route_id, ai_source or result.ai_source, [by_id[a.id] for a in result.assignments],
                         {a.id: a.route for a in result.assignments})


def load_route_file(path: Path) -> RouteResult:
    """The RouteResult JSON that `hyper route --out` writes."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgument("route", f"{path}: not a readable route file ({error})") from None
    try:
        return RouteResult.model_validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidArgument("route", f"{path}: not a route file: {field_path(first['loc']) or 'the file'}: "
                                       f"{first['msg']}") from None
