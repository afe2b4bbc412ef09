"""What every gRPC server shares: health, reflection, metrics, error mapping, shutdown."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from hyper import logs
from hyper.config import Settings
from hyper.errors import (
    DatasetRejected,
    HyperError,
    InvalidArgument,
    InvalidInstance,
    NotFound,
    PeerUnavailable,
    Unauthenticated,
)

log = logging.getLogger(__name__)

HANDLED = Counter("grpc_server_handled_total", "RPCs completed on the server, by status code.",
                  ["grpc_service", "grpc_method", "grpc_code"])
HANDLING_SECONDS = Histogram("grpc_server_handling_seconds", "RPC handling time on the server.",
                             ["grpc_service", "grpc_method"],
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
IN_FLIGHT = Gauge("grpc_server_in_flight_requests",
                  "RPCs being handled or waiting for a worker thread (the queue depth).", ["grpc_service"])

_STATUS_OF = (
    ((InvalidArgument, InvalidInstance, DatasetRejected), grpc.StatusCode.INVALID_ARGUMENT),
    ((NotFound,), grpc.StatusCode.NOT_FOUND),
    ((Unauthenticated,), grpc.StatusCode.UNAUTHENTICATED),
    ((PeerUnavailable,), grpc.StatusCode.UNAVAILABLE),
    ((HyperError,), grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(error: Exception) -> grpc.StatusCode:
    for types, code in _STATUS_OF:
        if isinstance(error, types):
            return code
    return grpc.StatusCode.INTERNAL


def answer(behaviour: Callable, method: str) -> Callable:
    """The behaviour with the core's errors mapped to gRPC status codes: done once, here, for
    every method of every service. Unexpected errors are logged with their traceback and reach
    the client as INTERNAL without one."""

    def answered(request_or_iterator, context: grpc.ServicerContext):
        try:
            return behaviour(request_or_iterator, context)
        except HyperError as error:
            context.abort(status_for(error), str(error))
        except grpc.RpcError as error:  # a downstream service's answer, passed on as it came
            context.abort(error.code(), f"downstream: {error.details()}")
        except Exception:  # noqa: BLE001 - the edge: nothing unexpected may crash the server
            log.exception("unhandled error in %s", method)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}")

    return answered


class ServingInterceptor(grpc.ServerInterceptor):
    """Around every RPC with a single response: error mapping (`answer`), then counting and
    timing by service, method and status code, and the in-flight gauge."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        _, service, method = handler_call_details.method.split("/")
        if handler.unary_unary:
            wrap, inner = grpc.unary_unary_rpc_method_handler, handler.unary_unary
        elif handler.stream_unary:
            wrap, inner = grpc.stream_unary_rpc_method_handler, handler.stream_unary
        else:
            return handler

        behaviour = answer(inner, method)
        in_flight = IN_FLIGHT.labels(service)

        def timed(request_or_iterator, context):
            start = time.perf_counter()
            try:
                return behaviour(request_or_iterator, context)
            finally:
                in_flight.dec()
                code = context.code() or grpc.StatusCode.OK
                HANDLED.labels(service, method, code.name).inc()
                HANDLING_SECONDS.labels(service, method).observe(time.perf_counter() - start)

        in_flight.inc()  # counted from arrival: intercept_service runs before a worker is free

        return wrap(timed, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)


def channel(address: str, settings: Settings) -> grpc.Channel:
    if settings.tls_ca:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(settings.tls_ca).read_bytes())
        return grpc.secure_channel(address, credentials, options=settings.grpc_options)
    return grpc.insecure_channel(address, options=settings.grpc_options)


def health_status(address: str, settings: Settings, timeout: float = 1.0) -> str:
    """SERVING, NOT_SERVING, ... or UNREACHABLE (<gRPC code>): the overall health of a server."""
    try:
        with channel(address, settings) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                        timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError as error:
        return f"UNREACHABLE ({error.code().name})"


def _listen(server: grpc.Server, address: str, settings: Settings) -> int:
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise HyperError("TLS needs both HYPER_TLS_CERT and HYPER_TLS_KEY")
    if not settings.tls_cert:
        return server.add_insecure_port(address)
    credentials = grpc.ssl_server_credentials(
        [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())])
    return server.add_secure_port(address, credentials)


class Server:
    """A gRPC server with health checking, reflection and a Prometheus endpoint."""

    def __init__(self, settings: Settings, service: str,
                 services: list[tuple[Callable, object, str]]):
        self.settings = settings
        self.service = service
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.grpc_workers),
                                interceptors=[ServingInterceptor()],
                                options=settings.grpc_options)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        self.service_names = [full_name for _, _, full_name in services]
        for add_to_server, servicer, _ in services:
            add_to_server(servicer, self.grpc)
        reflection.enable_server_reflection(
            self.service_names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                  reflection.SERVICE_NAME], self.grpc)
        self.port = _listen(self.grpc, f"{settings.host}:{getattr(settings, f'{service}_port')}",
                            settings)
        self.metrics_port = getattr(settings, f"{service}_metrics_port")

    def _set_health(self, status) -> None:
        for name in self.service_names + [""]:
            self.health.set(name, status)

    def start(self) -> None:
        if self.metrics_port:
            start_http_server(self.metrics_port, addr=self.settings.host)
        self.grpc.start()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"port": self.port, "metrics_port": self.metrics_port,
                                   "tls": bool(self.settings.tls_cert),
                                   "services": self.service_names})

    def serve_until_signal(self, grace_seconds: float = 5.0) -> None:
        """Blocks until SIGTERM/SIGINT, then drains in-flight RPCs before exiting."""
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        self.start()
        stopping.wait()
        log.info("stopping")
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.grpc.stop(grace_seconds).wait()
        log.info("stopped")


def full_name(pb2_module, service: str) -> str:
    return pb2_module.DESCRIPTOR.services_by_name[service].full_name


def run(service: str, build: Callable[[Settings], Server]) -> None:
    """The body of every service's `main`: settings from the environment, JSON logs, serve."""
    settings = Settings()
    logs.configure(service, settings.log_level)
    build(settings).serve_until_signal()
