"""The router's Route results in a real PostgreSQL server (Debian's package, started here): the
same store contract as the files, run against both; then two router processes on one database,
where a route made on one is read, page by page, on the other."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from harness.local import free_ports
from harness.models import known_ppm
from harness.postgres import PostgresServer, running_postgres
from harness.replicas import serving_replicas
from hyper.api import proto_convert, serving
from hyper.api.access import local_token
from hyper.api.clients import RouterClient
from hyper.api.messages import MAX_PAGE, Assignment, RouteResult, Skill
from hyper.core.catalogue import FEATURE_NAMES
from hyper.core.errors import InvalidArgument, NotFound
from hyper.core.settings import Settings
from hyper.infra.database import open_database
from hyper.method.performance_models import QuadraticForm
from hyper.v1 import common_pb2, router_pb2
from hyper_ppm.store import ModelRegistry
from hyper_router.routing import AssignmentColumns
from hyper_router.store import ALL, FileRouteStore, PostgresRouteStore, RouteStore

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["files", "postgres"])
def store(request, tmp_path) -> Iterator[RouteStore]:
    if request.param == "files":
        yield FileRouteStore(tmp_path)
        return
    server = request.getfixturevalue("postgres")
    database = open_database(server.create_database(f"routes_{uuid.uuid4().hex[:12]}"), connect_timeout_s=10)
    yield PostgresRouteStore(database)
    database.close()


def made_route(n: int, seed: int = 0) -> tuple[RouteResult, AssignmentColumns]:
    """A route as the data plane saves it and its n assignments."""
    rng = np.random.default_rng(seed)
    columns = AssignmentColumns([f"pair-{k}" for k in range(n)],
                                rng.choice(["human", "gpt-4o", "llama"], n).tolist(),
                                rng.normal(0, 1e-3, n), rng.uniform(0, 2, n))
    route = RouteResult(
        route_id=uuid.uuid4().hex, predicted_score=0.71, predicted_lower=0.69, predicted_upper=0.73,
        n_human=columns.routes.count("human"), n_instances=n, strategy="topk", ppm_version="v1-0123abcd",
        warnings=["a warning"], n_by_source=Counter(columns.routes), ppm_skill=Skill(spearman=0.5, ci_low=0.1,
        ci_high=0.8, n_runs=40), ppm_target="label_accuracy", n_forced_human=0, n_skipped_rows=0,
        budget_fraction=0.25, total_cost=float(columns.costs.sum()), interval_level=0.9, budget_curve=[],
        assignments=[])
    return route, columns


def as_rows(columns: AssignmentColumns) -> list[Assignment]:
    return [Assignment(id=i, route=r, gain=g, cost=c) for i, r, g, c in columns.rows()]


def all_pages(store: RouteStore, route_id: str, size: int) -> tuple[list[Assignment], list[str]]:
    """Every assignment, following the tokens from the first page; the tokens seen."""
    assignments, tokens, token = [], [], ""
    while True:
        page, token, _ = store.page(route_id, token, size)
        assignments.extend(page)
        tokens.append(token)
        if not token:
            return assignments, tokens


def without_assignments(route: RouteResult) -> RouteResult:
    return route.model_copy(update={"assignments": [], "next_page_token": ""})


def message_without_assignments(response: router_pb2.RouteResponse) -> router_pb2.RouteResponse:
    summary = router_pb2.RouteResponse()
    summary.CopyFrom(response)
    del summary.assignments[:]
    summary.next_page_token = ""
    return summary


# The store contract, the same for both backends.

def test_a_route_comes_back_whole_page_by_page_with_offsets_as_tokens(store):
    route, columns = made_route(3_001)
    store.save(route, columns)
    expected = as_rows(columns)
    assignments, tokens = all_pages(store, route.route_id, 250)
    assert assignments == expected
    assert tokens == [str(k) for k in range(250, 3_001, 250)] + [""]
    page, token, total = store.page(route.route_id, "2990", 250)
    assert (page, token, total) == (expected[2990:], "", 3_001)

    loaded = store.load(route.route_id, 100)
    assert list(loaded.assignments) == expected[:100] and loaded.next_page_token == "100"
    assert without_assignments(loaded) == without_assignments(route)
    whole = store.load(route.route_id, ALL)
    assert list(whole.assignments) == expected and whole.next_page_token == ""


def test_pages_of_the_largest_size_cross_the_stored_blocks(store):
    """More than two MAX_PAGE blocks (the files' row groups): full pages, and pages that start
    inside one block and end inside the next."""
    n = 2 * MAX_PAGE + 3
    route, columns = made_route(n, seed=1)
    started = time.perf_counter()
    store.save(route, columns)
    saved = time.perf_counter() - started
    expected = as_rows(columns)
    pages, token = [], ""
    while True:
        page, token, total = store.page(route.route_id, token, MAX_PAGE)
        pages.append(page)
        if not token:
            break
    read = time.perf_counter() - started - saved
    print(f"\n{type(store).__name__}: saved {n:,} assignments in {saved:.2f} s, read them in {read:.2f} s")
    assert [len(p) for p in pages] == [MAX_PAGE, MAX_PAGE, 3] and total == n
    assert [a for p in pages for a in p] == expected
    across, token, _ = store.page(route.route_id, str(MAX_PAGE - 5), 10)
    assert across == expected[MAX_PAGE - 5:MAX_PAGE + 5] and token == str(MAX_PAGE + 5)


def test_an_empty_route_and_the_end_of_a_route_are_pages_of_nothing(store):
    empty, columns = made_route(0)
    store.save(empty, columns)
    assert store.page(empty.route_id, "", 10) == ([], "", 0)
    assert list(store.load(empty.route_id).assignments) == []
    route, columns = made_route(20)
    store.save(route, columns)
    assert store.page(route.route_id, "20", 10) == ([], "", 20)


@pytest.mark.parametrize("route_id", ["", "../../etc/passwd", "0" * 31, "A" * 32, "x'; DROP TABLE routes;--"])
def test_a_malformed_route_id_is_refused_naming_the_field(store, route_id):
    for call in (lambda: store.load(route_id), lambda: store.page(route_id, "", 10)):
        with pytest.raises(InvalidArgument) as caught:
            call()
        assert caught.value.field == "route_id"


@pytest.mark.parametrize("token", ["x1", "-1", "1.5", " 5", "21", "99999999999999999999"])
def test_a_token_that_is_no_offset_of_the_route_is_refused_naming_the_field(store, token):
    route, columns = made_route(20)
    store.save(route, columns)
    with pytest.raises(InvalidArgument) as caught:
        store.page(route.route_id, token, 10)
    assert caught.value.field == "page_token"


def test_an_unknown_route_is_not_found(store):
    unknown = uuid.uuid4().hex
    for call in (lambda: store.load(unknown), lambda: store.page(unknown, "", 10)):
        with pytest.raises(NotFound, match=f"no route {unknown}"):
            call()


def test_a_deleted_route_is_gone_whole_and_others_stay(store):
    kept, deleted = made_route(30, seed=1), made_route(30, seed=2)
    for route, columns in (kept, deleted):
        store.save(route, columns)
    store.delete(deleted[0].route_id)
    for call in (lambda: store.load(deleted[0].route_id), lambda: store.page(deleted[0].route_id, "", 10),
                 lambda: store.delete(deleted[0].route_id)):
        with pytest.raises(NotFound):
            call()
    assert all_pages(store, kept[0].route_id, 7)[0] == as_rows(kept[1])
    with pytest.raises(InvalidArgument):
        store.delete("../routes")


def test_routes_past_their_retention_expire_and_newer_ones_stay(store):
    old, new = made_route(20, seed=3), made_route(20, seed=4)
    store.save(*old)
    time.sleep(1.2)
    store.save(*new)
    assert store.expire(older_than_s=0.6) == 1
    with pytest.raises(NotFound):
        store.load(old[0].route_id)
    assert store.load(new[0].route_id).n_instances == 20
    assert store.expire(older_than_s=3600) == 0


def test_a_save_that_fails_leaves_no_route(store):
    route, columns = made_route(50)
    columns.costs = columns.costs[:-1]  # one column short: refused part-way through
    with pytest.raises(ValueError):
        store.save(route, columns)
    with pytest.raises(NotFound):
        store.load(route.route_id)


def test_a_route_persisted_before_parquet_is_paged_from_its_json(tmp_path):
    """Files only: such routes hold their assignments inside their JSON."""
    route, columns = made_route(25)
    response = proto_convert.route_result_to_proto(route.model_copy(update={"assignments": as_rows(columns)}))
    (tmp_path / "routes").mkdir()  # as they were written: proto JSON without its default values
    (tmp_path / "routes" / f"{route.route_id}.json").write_text(json.dumps(proto_convert.message_to_dict(response)))
    store = FileRouteStore(tmp_path)
    assert all_pages(store, route.route_id, 10) == (as_rows(columns), ["10", "20", ""])
    loaded = store.load(route.route_id, 7)
    assert list(loaded.assignments) == as_rows(columns)[:7] and loaded.next_page_token == "7"
    with pytest.raises(InvalidArgument):
        store.page(route.route_id, "26", 10)


# Two router processes sharing one database.

@pytest.fixture(scope="module")
def router_replicas(services, postgres, tmp_path_factory) -> Iterator[list[Settings]]:
    """Two `hyper-router` processes, each with a home of its own, on one database, in front of
    the session's tagger and ppm (whose `hyper up` token they are given)."""
    url = postgres.create_database("router_replicas")
    replicas = []
    for k in range(2):
        [port] = free_ports(1)
        replicas.append(services.model_copy(update={
            "home": tmp_path_factory.mktemp(f"router{k}"), "database_url": url, "router_port": port,
            "router_metrics_port": 0, "tagger_address": services.address("tagger"),
            "ppm_address": services.address("ppm"), "caller_token": local_token(services.home)}))
    with serving_replicas("router", replicas) as running:
        yield running


def test_a_route_made_on_one_replica_is_read_page_by_page_on_the_other(services, router_replicas, hh_dataset):
    names = list(FEATURE_NAMES)
    ppm = known_ppm(names, QuadraticForm(0.6, np.random.default_rng(5).normal(0, 1e-3, len(names))))
    ModelRegistry(services.ppm_dir).save("replicas", ppm.to_json())
    pairs = hh_dataset.instances[:30]
    channels = [serving.channel(s.address("router"), s) for s in router_replicas]
    first, second = (RouterClient(ch) for ch in channels)
    inline = common_pb2.InstanceList(instances=[proto_convert.instance_to_proto(i) for i in pairs])
    made = first.route(router_pb2.RouteRequest(dataset=common_pb2.Dataset(inline=inline),
                                               budget=router_pb2.Budget(count=8), ppm_model="replicas", page_size=7))
    assert len(made.assignments) == 7 and made.next_page_token == "7"
    whole = first.with_all_assignments(first.get_route(made.route_id, 100))

    fetched = second.get_route(made.route_id, 4)
    assert message_without_assignments(fetched) == message_without_assignments(made)
    pages = [list(fetched.assignments), *second.assignment_pages(made.route_id, fetched.next_page_token, 9)]
    assert [len(p) for p in pages] == [4, 9, 9, 8]
    assert [a for p in pages for a in p] == list(whole.assignments)
    assert [a.id for a in whole.assignments] == [i.id for i in pairs]
    assert sum(a.route == "human" for a in whole.assignments) == 8

    with pytest.raises(grpc.RpcError) as caught:
        second.get_route(uuid.uuid4().hex)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        second.list_assignments(made.route_id, "31", 5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and caught.value.details().startswith("page_token")
    for ch in channels:
        ch.close()
