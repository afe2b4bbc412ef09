"""Entry point of the ppm process (the container command, and `hyper up`'s child)."""

from __future__ import annotations

from hyper import serving
from hyper.config import Settings
from hyper.ppm.models import PerformanceModels
from hyper.ppm.servicer import PPMServicer
from hyper.ppm.store import ModelRegistry, RunStore
from hyper.v1 import ppm_pb2, ppm_pb2_grpc


def build(settings: Settings) -> serving.Server:
    models = PerformanceModels(ModelRegistry(settings.ppm_dir), RunStore(settings.ppm_dir))
    servicer = PPMServicer(models, settings.ppm_record_token)
    return serving.Server(settings, "ppm", [(
        ppm_pb2_grpc.add_PPMServiceServicer_to_server, servicer,
        serving.full_name(ppm_pb2, "PPMService"))])


def main() -> None:
    serving.run("ppm", build)


if __name__ == "__main__":
    main()
