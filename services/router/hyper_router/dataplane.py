"""What the RouterService does, in the core's types (the servicer only converts): a Route is
made, given its id, persisted and counted here; routes are read back a page at a time; a
persisted route is explained again; a dataset is diagnosed."""

from __future__ import annotations

import uuid
from collections.abc import Hashable

from hyper.api.messages import (
    MAX_REPORT_SAMPLE,
    Assignment,
    Budget,
    DatasetRefBody,
    Diagnosis,
    RouteOptions,
    RouteResult,
)
from hyper.core.errors import InvalidArgument
from hyper.core.schema import Dataset, DatasetRef
from hyper.data.label_sources import LabelRoles
from hyper.reports.route_report import render_html
from hyper_router.diagnosis import diagnosis_message
from hyper_router.metrics import count_route
from hyper_router.routing import Router
from hyper_router.store import ALL, RouteStore

# What to route: a file the router reads itself, or validated instances sent inline.
DatasetSource = DatasetRef | Dataset


class RouterDataPlane:
    def __init__(self, router: Router, store: RouteStore):
        self.router = router
        self.store = store

    def _load(self, source: DatasetSource) -> tuple[Dataset, Hashable | None]:
        """The dataset and its memo key (None for inline instances: the router fingerprints them)."""
        return self.router.load_dataset(source) if isinstance(source, DatasetRef) else (source, None)

    def route(self, source: DatasetSource, budget: Budget | None, options: RouteOptions, page_size: int
              ) -> RouteResult:
        dataset, key = self._load(source)
        route = self.router.route(dataset, budget, options, key)
        ref = DatasetRefBody(path=source.path, format=source.format, columns=dict(source.columns),
                             skip_bad_rows=source.skip_bad_rows) if isinstance(source, DatasetRef) else None
        route.result = route.result.model_copy(update={"route_id": uuid.uuid4().hex, "dataset_ref": ref})
        self.store.save(route.result, route.assignments)
        count_route(route.result)
        return self.store.load(route.result.route_id, page_size)

    def get_route(self, route_id: str, page_size: int, page_token: str = "") -> RouteResult:
        return self.store.load(route_id, page_size, page_token)

    def list_assignments(self, route_id: str, page_token: str, page_size: int) -> tuple[list[Assignment], str, int]:
        return self.store.page(route_id, page_token, page_size)

    def report(self, route_id: str, sample_size: int) -> str:
        """The persisted route explained again, as one offline HTML page."""
        if sample_size > MAX_REPORT_SAMPLE:
            raise InvalidArgument("sample_size", f"{sample_size} is more than the {MAX_REPORT_SAMPLE} pairs per "
                                                 "route a report shows")
        route = self.store.load(route_id, ALL)
        if route.dataset_ref is None:
            raise InvalidArgument("route_id", "the route was given its pairs inline: only a route of a file "
                                              "(dataset.ref) can be explained again")
        dataset, key = self.router.load_dataset(route.dataset_ref.to_dataset_ref())
        return render_html(self.router.report(route, dataset, key, sample_size))

    def diagnose(self, source: DatasetSource, roles: LabelRoles, seed: int) -> Diagnosis:
        dataset, key = self._load(source)
        return diagnosis_message(self.router.diagnose(dataset, roles, seed, key))
