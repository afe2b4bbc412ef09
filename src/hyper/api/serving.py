"""What every gRPC server shares: health, reflection, metrics, error mapping, shutdown."""

from __future__ import annotations

import errno
import faulthandler
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from hyper.api.access import CALLER, AccessPolicy, local_token
from hyper.core import logs
from hyper.core.errors import (
    CallerGone,
    DatasetRejected,
    HyperError,
    InvalidArgument,
    InvalidInstance,
    NotFound,
    PeerUnavailable,
    PermissionDenied,
    QuotaExceeded,
    Unauthenticated,
)
from hyper.core.settings import Settings

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
    ((PermissionDenied,), grpc.StatusCode.PERMISSION_DENIED),
    ((CallerGone,), grpc.StatusCode.CANCELLED),
    ((QuotaExceeded,), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ((PeerUnavailable,), grpc.StatusCode.UNAVAILABLE),
    ((HyperError,), grpc.StatusCode.FAILED_PRECONDITION),
)


# A state volume that cannot take a write: the operator must act, the caller may retry later.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}
# Health and reflection answer even when the work has taken every worker it may.
_UNCAPPED_SERVICES = {health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME}
# Threads kept free of work: one answers health checks (the liveness probe) and quick refusals,
# the other serves at most STREAM_SLOTS open health or reflection streams (Watch,
# ServerReflectionInfo): each holds its thread while open, however idle, so more are refused.
RESERVED_WORKERS = 2
STREAM_SLOTS = 1
MAX_VIOLATIONS = 10


def status_for(error: Exception) -> grpc.StatusCode:
    for types, code in _STATUS_OF:
        if isinstance(error, types):
            return code
    return grpc.StatusCode.INTERNAL


def field_violations(error: HyperError) -> list[tuple[str, str]]:
    """(field, description) of each input problem an error names; empty for other errors."""
    if isinstance(error, InvalidArgument):
        return [(error.field, error.reason)]
    if isinstance(error, InvalidInstance):
        return [(f"row[{error.row}].{error.field}", error.reason)]
    if isinstance(error, DatasetRejected):
        return [(f"row[{e.row}].{e.field}", e.reason) for e in error.errors]  # the message names the file
    return []


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def violations_in_status(error: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) of the google.rpc.BadRequest in an answer's status details."""
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    found: list[tuple[str, str]] = []
    details: list = list(status.details) if status is not None else []
    for detail in details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found += [(v.field, v.description) for v in bad_request.field_violations]
    return found


def abort_with_details(context: grpc.ServicerContext, code: grpc.StatusCode, message: str,
                       violations: list[tuple[str, str]]) -> None:
    """Aborts with the message, plus google.rpc.BadRequest field violations a client can read
    without parsing the message (grpc_status.rpc_status.from_call). Both travel in headers,
    whose size gRPC limits (8 KiB by default): long texts are clipped, as a request's own huge
    values echoed back would otherwise turn a clear refusal into a transport error."""
    message = _clip(message, 1000)
    if not violations:
        context.abort(code, message)
    details = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=_clip(field, 100), description=_clip(description, 150))
        for field, description in violations[:MAX_VIOLATIONS]])
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    status.details.add().Pack(details)
    context.abort_with_status(rpc_status.to_status(status))


def answer(behaviour: Callable, method: str) -> Callable:
    """The behaviour with the core's errors mapped to gRPC status codes: done once, here, for
    every method of every service. Unexpected errors are logged with their traceback and reach
    the client as INTERNAL without one."""

    def answered(request_or_iterator, context: grpc.ServicerContext):
        try:
            return behaviour(request_or_iterator, context)
        except Exception as error:  # noqa: BLE001 - the edge: nothing unexpected may crash the server
            code, message, violations = _refusal(error, method)
        abort_with_details(context, code, message, violations)

    return answered


def _refusal(error: Exception, method: str) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    """The status code, message and field violations an error is answered with."""
    if isinstance(error, HyperError):
        return status_for(error), str(error), field_violations(error)
    if isinstance(error, grpc.RpcError):  # a downstream service's answer, passed on as it came
        return error.code(), f"downstream: {error.details()}", violations_in_status(error)
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
        log.error("state not writable in %s: %s", method, error)
        return (grpc.StatusCode.UNAVAILABLE,
                f"the server's state could not be written (nothing was half-written): {error}", [])
    log.error("unhandled error in %s", method, exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error in {method}", []


class ServingInterceptor(grpc.ServerInterceptor):
    """Around every RPC with a single response: the caller's permission (hyper.api.access),
    error mapping (`answer`), then counting and timing by service, method and status code, and
    the in-flight gauge.

    At most `max_concurrent` work RPCs run at once; one more is refused at once with
    RESOURCE_EXHAUSTED instead of queueing behind them (a caller backs off, a load balancer
    tries another replica). Health and reflection are not counted: the server keeps
    RESERVED_WORKERS threads that work never holds, so the liveness probe is answered while
    every work slot is taken; their streams (Watch, reflection) are capped apart, at
    STREAM_SLOTS open at once, so idle streams cannot take the probe's thread."""

    def __init__(self, max_concurrent: int, access: AccessPolicy):
        self.max_concurrent = max_concurrent
        self.slots = threading.BoundedSemaphore(max_concurrent)
        self.stream_slots = threading.BoundedSemaphore(STREAM_SLOTS)
        self.access = access

    def _capped_stream(self, behaviour: Callable) -> Callable:
        def capped(request_or_iterator, context):
            if not self.stream_slots.acquire(blocking=False):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{STREAM_SLOTS} health or reflection stream(s) already open; close one first")
            try:
                yield from behaviour(request_or_iterator, context)
            finally:
                self.stream_slots.release()

        return capped

    def _authorized(self, behaviour: Callable, service: str, method: str) -> Callable:
        def authorized(request_or_iterator, context: grpc.ServicerContext):
            identities = [identity.decode() for identity in context.peer_identities() or []]
            metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
            caller = CALLER.set(self.access.authorize(service, method, metadata, identities))
            try:
                return behaviour(request_or_iterator, context)
            finally:
                CALLER.reset(caller)

        return authorized

    def _capped(self, behaviour: Callable) -> Callable:
        def capped(request_or_iterator, context):
            if not self.slots.acquire(blocking=False):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"the server is running its limit of {self.max_concurrent} calls "
                              "(HYPER_GRPC_WORKERS); retry with backoff")
            try:
                return behaviour(request_or_iterator, context)
            finally:
                self.slots.release()

        return capped

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        _, service, method = handler_call_details.method.split("/")
        if service in _UNCAPPED_SERVICES and (handler.unary_stream or handler.stream_stream):
            return self._stream_handler(handler)
        if handler.unary_unary:
            wrap, inner = grpc.unary_unary_rpc_method_handler, _decoded_request(handler.unary_unary)
        elif handler.stream_unary:
            wrap, inner = grpc.stream_unary_rpc_method_handler, _decoded_stream(handler.stream_unary)
        else:
            return handler

        if service in _UNCAPPED_SERVICES:
            behaviour = answer(inner, method)
        else:
            behaviour = self._capped(answer(self._authorized(inner, service, method), method))
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

        return wrap(timed, request_deserializer=_tolerant(handler.request_deserializer),
                    response_serializer=handler.response_serializer)

    def _stream_handler(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """Health.Watch or reflection, within the stream cap."""
        wrap = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        behaviour = handler.unary_stream or handler.stream_stream
        assert behaviour is not None  # the caller checked
        return wrap(self._capped_stream(behaviour),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)


@dataclass
class _Undecodable:
    """Bytes that are not the method's request message (grpc would answer INTERNAL for them)."""

    reason: str


def _tolerant(deserialize: Callable) -> Callable:
    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception as error:  # noqa: BLE001 - protobuf's DecodeError, or a UTF-8 error
            return _Undecodable(str(error) or type(error).__name__)

    return parse


def _checked(message):
    if isinstance(message, _Undecodable):
        raise InvalidArgument("request", f"not a valid message of this method: {message.reason}")
    return message


def _decoded_request(behaviour: Callable) -> Callable:
    return lambda request, context: behaviour(_checked(request), context)


def _decoded_stream(behaviour: Callable) -> Callable:
    return lambda requests, context: behaviour((_checked(m) for m in requests), context)


# Calls that may be repeated without effect beyond the first: retried by gRPC itself, with
# exponential backoff, while the peer is UNAVAILABLE (restarting, or not yet listening) or
# refuses them for being at its limit of concurrent calls (RESOURCE_EXHAUSTED).
IDEMPOTENT_METHODS = {
    # not Annotate: a paid judge
    "hyper.v1.TaggerService": ["Tag", "TagStream", "MissingKeys", "TagCached", "GetCatalogue"],
    "hyper.v1.PPMService": ["GetModel", "GetArtifact", "ListModels", "ListRuns", "RecordRun"],
    "hyper.v1.RouterService": ["GetRoute", "ListAssignments", "Report", "Diagnose"],
}
RETRY_POLICY = {"maxAttempts": 5, "initialBackoff": "0.5s", "maxBackoff": "8s",
                "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}
# A client stops retrying to a server once failures have drained half its tokens (each failed
# attempt takes one, each success gives back a tenth): under a lasting outage or overload,
# retries would otherwise multiply the load up to five times. A hundred tokens let a short
# outage (a restarted peer: a few failed attempts) still be retried through.
RETRY_THROTTLING = {"maxTokens": 100, "tokenRatio": 0.1}


def service_config(retry_policy: dict) -> str:
    """The client's service config: retries of the idempotent methods, throttled."""
    return json.dumps({"methodConfig": [{
        "name": [{"service": service, "method": method}
                 for service, methods in IDEMPOTENT_METHODS.items() for method in methods],
        "retryPolicy": retry_policy}], "retryThrottling": RETRY_THROTTLING})


# The token of the caller a call is made for, where a process calls on someone's behalf (the
# gateway forwarding its user's token, HYPER_GATEWAY_FORWARD_TOKENS): that caller's own
# permissions and quotas apply, not the process's.
ON_BEHALF_OF: ContextVar[str] = ContextVar("on_behalf_of", default="")


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: list[tuple[str, str | bytes]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _PresentToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                    grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Every call carries a bearer token: the call's own (a training Job's record token), else
    the one of the caller this process acts for (ON_BEHALF_OF: the gateway's user), else this
    process's own, if any."""

    def __init__(self, token: str):
        self.token = token

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = list(details.metadata or [])
        token = ON_BEHALF_OF.get() or self.token
        if token and not any(key == "authorization" for key, _ in metadata):
            metadata.append(("authorization", f"Bearer {token}"))
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,  # type: ignore[return-value]
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)


def channel(address: str, settings: Settings) -> grpc.Channel:
    """A client channel: TLS when a CA is configured (presenting our certificate when mutual
    TLS is on), this process's token when it has one, retries of idempotent calls,
    message-size limits."""
    opened = _transport(address, settings)
    # Without a token of its own, a client of `hyper up`'s services presents the one kept under
    # the same home directory (readable by the user who started them alone).
    return grpc.intercept_channel(opened, _PresentToken(settings.caller_token or local_token(settings.home)))


def _transport(address: str, settings: Settings) -> grpc.Channel:
    # A client stream (TagStream) is retried only while its messages fit the retry buffer.
    size = settings.max_message_mb * 1024 * 1024
    # A restarted peer is reconnected to within seconds (gRPC's default backoff grows to 120 s).
    options = settings.grpc_options + [
        ("grpc.enable_retries", 1), ("grpc.service_config", service_config(RETRY_POLICY)),
        ("grpc.initial_reconnect_backoff_ms", 250), ("grpc.max_reconnect_backoff_ms", 4000),
        ("grpc.per_rpc_retry_buffer_size", size), ("grpc.retry_buffer_size", size)]
    if not settings.tls_ca:
        return grpc.insecure_channel(address, options=options)
    identity = {}
    if settings.tls_client_auth:
        identity = {"private_key": Path(settings.tls_key).read_bytes(),
                    "certificate_chain": Path(settings.tls_cert).read_bytes()}
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(settings.tls_ca).read_bytes(),
                                               **identity)
    return grpc.secure_channel(address, credentials, options=options)


def health_status(address: str, settings: Settings, timeout: float = 1.0) -> str:
    """SERVING, NOT_SERVING, ... or UNREACHABLE (<gRPC code>): the overall health of a server."""
    try:
        with channel(address, settings) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                        timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError as error:
        return f"UNREACHABLE ({error.code().name})"


def _connection_limits(settings: Settings) -> list[tuple[str, int]]:
    """Connections do not outlive their use: an idle one is closed, and a quiet one is pinged
    so that a peer that vanished (a killed pod, a dropped network) is found and its streams end."""
    return [("grpc.max_connection_idle_ms", int(settings.grpc_idle_close_s * 1000)),
            # An old connection is told to go (GOAWAY) and its client reconnects, so that load
            # spreads over replicas that came later; calls under way get as long again to finish.
            ("grpc.max_connection_age_ms", int(settings.grpc_max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.grpc_max_connection_age_s * 1000)),
            ("grpc.keepalive_time_ms", 60_000), ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1)]


def _listen(server: grpc.Server, address: str, settings: Settings) -> int:
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise HyperError("TLS needs both HYPER_TLS_CERT and HYPER_TLS_KEY")
    if not settings.tls_cert:
        return server.add_insecure_port(address)
    if settings.tls_client_auth and not settings.tls_ca:
        raise HyperError("mutual TLS (HYPER_TLS_CLIENT_AUTH) needs HYPER_TLS_CA to verify clients")
    credentials = grpc.ssl_server_credentials(
        [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())],
        root_certificates=Path(settings.tls_ca).read_bytes() if settings.tls_client_auth else None,
        require_client_auth=settings.tls_client_auth)
    return server.add_secure_port(address, credentials)


#: Seconds a stopping server may take past its drain to exit: its interpreter's teardown took
#: 1.7 to 3.5 s on 2 busy cores, and `hyper down` sends SIGKILL 15 s after SIGTERM.
EXIT_OVERRUN_S = 8.0

#: Seconds between the main thread's checks for a stop signal. The kernel may hand SIGTERM to any
#: thread of the process, and Python runs its handler only when the main thread next executes
#: bytecode: a main thread blocked in a bare `Event.wait()` slept through SIGTERM (twice in CI;
#: reproduced on 2 loaded cores, where py-spy showed it still waiting 40 s after the signal).
SIGNAL_POLL_S = 0.5


class Server:
    """A gRPC server with health checking, reflection and a Prometheus endpoint."""

    def __init__(self, settings: Settings, service: str,
                 services: list[tuple[Callable, object, str]]):
        self.settings = settings
        self.service = service
        workers = futures.ThreadPoolExecutor(max_workers=settings.grpc_workers + RESERVED_WORKERS)
        access = AccessPolicy.load(settings.access_policy, settings.ppm_record_token)
        self.grpc = grpc.server(workers, interceptors=[ServingInterceptor(settings.grpc_workers, access)],
                                options=settings.grpc_options + _connection_limits(settings))
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

    def serve_until_signal(self, grace_seconds: float = 5.0, exit_overrun_s: float = EXIT_OVERRUN_S) -> None:
        """Blocks until SIGTERM/SIGINT, then drains in-flight RPCs before exiting. A process still
        alive `exit_overrun_s` after the drain's grace prints every thread's stack and exits 1."""
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        self.start()
        while not stopping.wait(SIGNAL_POLL_S):
            pass
        log.info("stopping")
        # Whatever would hold the process past this (a thread that never ends, a library's
        # teardown that hangs) is named in the log before `hyper down`'s or Kubernetes' SIGKILL
        # would end it with nothing said.
        faulthandler.dump_traceback_later(grace_seconds + exit_overrun_s, exit=True)
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
