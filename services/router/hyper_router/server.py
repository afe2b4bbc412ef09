"""Entry point of the router process (the container command, and `hyper up`'s child)."""

from __future__ import annotations

from hyper.api import serving
from hyper.api.clients import PPMClient, TaggerClient
from hyper.core.settings import Settings
from hyper.infra.database import open_database
from hyper.v1 import router_pb2, router_pb2_grpc
from hyper_router.dataplane import RouterDataPlane
from hyper_router.quota import Quotas
from hyper_router.routing import Router
from hyper_router.servicer import RouterServicer
from hyper_router.store import FileRouteStore, PostgresRouteStore, RouteStore


def route_store(settings: Settings) -> RouteStore:
    """PostgreSQL when a database is configured (replicas share it; migrated here, at start-up),
    else files under the home directory (one process)."""
    if not settings.database_url:
        return FileRouteStore(settings.home)
    # One connection per work RPC that may run at once.
    database = open_database(settings.database_url, settings.grpc_workers, settings.database_connect_timeout_s)
    return PostgresRouteStore(database)


def build(settings: Settings) -> serving.Server:
    router = Router(TaggerClient.connect(settings), PPMClient.connect(settings), data_roots=settings.data_root_paths,
                    quotas=Quotas.of(settings.routes_per_hour, settings.judge_pairs_per_hour,
                                     settings.judge_money_per_hour),
                    memo_bytes=settings.router_memo_mb * 2**20, max_pairs=settings.route_max_pairs)
    servicer = RouterServicer(RouterDataPlane(router, route_store(settings), settings.route_retention_days))
    return serving.Server(settings, "router", [(
        router_pb2_grpc.add_RouterServiceServicer_to_server, servicer,
        serving.full_name(router_pb2, "RouterService"))])


def main() -> None:
    serving.run("router", build)


if __name__ == "__main__":
    main()
