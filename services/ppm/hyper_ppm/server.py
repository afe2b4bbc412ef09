"""Entry point of the ppm process (the container command, and `hyper up`'s child)."""

from __future__ import annotations

from hyper.api import serving
from hyper.core.settings import Settings
from hyper.infra.database import open_database
from hyper.v1 import ppm_pb2, ppm_pb2_grpc
from hyper_ppm.models import PerformanceModels
from hyper_ppm.servicer import PPMServicer
from hyper_ppm.store import (
    ModelRegistry,
    ModelVersions,
    PostgresModelRegistry,
    PostgresRunStore,
    RunRecords,
    RunStore,
)


def stores(settings: Settings) -> tuple[ModelVersions, RunRecords]:
    """PostgreSQL when a database is configured (replicas share it; migrated here, at start-up),
    else files under the home directory (one process)."""
    if not settings.database_url:
        return ModelRegistry(settings.ppm_dir), RunStore(settings.ppm_dir)
    # One connection per work RPC that may run at once.
    database = open_database(settings.database_url, settings.grpc_workers, settings.database_connect_timeout_s)
    return PostgresModelRegistry(database), PostgresRunStore(database)


def build(settings: Settings) -> serving.Server:
    models = PerformanceModels(*stores(settings))
    servicer = PPMServicer(models)
    return serving.Server(settings, "ppm", [(
        ppm_pb2_grpc.add_PPMServiceServicer_to_server, servicer,
        serving.full_name(ppm_pb2, "PPMService"))])


def main() -> None:
    serving.run("ppm", build)


if __name__ == "__main__":
    main()
