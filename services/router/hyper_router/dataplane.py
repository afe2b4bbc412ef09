"""What the RouterService does, in the core's types (the servicer only converts): a Route is
made, given its id, persisted and counted here; routes are read back a page at a time, deleted,
and expired past their retention; a persisted route is explained again; a dataset is
diagnosed."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable

from hyper.api.access import CALLER
from hyper.api.messages import (
    MAX_REPORT_SAMPLE,
    Assignment,
    Budget,
    DatasetRefBody,
    Diagnosis,
    RouteOptions,
    RouteResult,
)
from hyper.core.errors import CallerGone, InvalidArgument
from hyper.core.schema import Dataset, DatasetRef
from hyper.data.label_sources import LabelRoles
from hyper.reports.route_report import render_html
from hyper_router.diagnosis import diagnosis_message
from hyper_router.metrics import Phases, count_route
from hyper_router.routing import Router
from hyper_router.store import ALL, RouteStore

log = logging.getLogger(__name__)

# What to route: a file the router reads itself, or validated instances sent inline.
DatasetSource = DatasetRef | Dataset
# Expired routes are looked for at most this often, after a save.
EXPIRY_EVERY_S = 600.0


class Retention:
    """Deletes routes older than `days` (0: keep every route), from time to time."""

    def __init__(self, store: RouteStore, days: float):
        self.store = store
        self.seconds = days * 86_400
        self.last = -EXPIRY_EVERY_S
        self.lock = threading.Lock()

    def expire_due(self) -> None:
        with self.lock:
            if not self.seconds or time.monotonic() - self.last < EXPIRY_EVERY_S:
                return
            self.last = time.monotonic()
        expired = self.store.expire(self.seconds)
        if expired:
            log.info("routes expired", extra={"routes": expired, "retention_days": self.seconds / 86_400})


class RouterDataPlane:
    def __init__(self, router: Router, store: RouteStore, retention_days: float = 0.0):
        self.router = router
        self.store = store
        self.retention = Retention(store, retention_days)
        self.retention.expire_due()

    def _load(self, source: DatasetSource) -> tuple[Dataset, Hashable | None]:
        """The dataset and its memo key (None for inline instances: the router fingerprints them)."""
        if isinstance(source, DatasetRef):
            return self.router.load_dataset(source)
        self.router.within_ceiling(len(source.instances))
        return source, None

    def route(self, source: DatasetSource, budget: Budget | None, options: RouteOptions, page_size: int,
              caller_waiting: Callable[[], bool] = lambda: True) -> RouteResult:
        """Made, and saved only while the caller still waits for it (nobody could read the id of
        a route saved after its caller gave up)."""
        self.router.quotas.routes.reserve(CALLER.get(), 1)
        phases = Phases()
        with phases("read"):
            dataset, key = self._load(source)
        route = self.router.route(dataset, budget, options, key, phases)
        if not caller_waiting():
            raise CallerGone("the caller stopped waiting: the route was made and not saved")
        ref = DatasetRefBody(path=source.path, format=source.format, columns=dict(source.columns),
                             skip_bad_rows=source.skip_bad_rows) if isinstance(source, DatasetRef) else None
        route.result = route.result.model_copy(update={"route_id": uuid.uuid4().hex, "dataset_ref": ref})
        with phases("save"):
            self.store.save(route.result, route.assignments)
        count_route(route.result)
        log.info("route phases", extra={"route_id": route.result.route_id, "n_instances": route.result.n_instances,
                                        "seconds": phases.seconds})
        self.retention.expire_due()
        return self.store.load(route.result.route_id, page_size)

    def delete_route(self, route_id: str) -> None:
        self.store.delete(route_id)

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
        self.router.quotas.routes.reserve(CALLER.get(), 1)
        dataset, key = self._load(source)
        return diagnosis_message(self.router.diagnose(dataset, roles, seed, key))
