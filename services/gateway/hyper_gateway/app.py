"""The REST gateway: a thin FastAPI layer over the router's and ppm's gRPC APIs, through their
typed clients. Bodies and answers are the typed models of `hyper.api.messages`, so the OpenAPI
page documents every field; invalid bodies and gRPC errors both become HTTP errors naming the
field, in one shape: {"error": {"code": ..., "message": ...}}.

    POST /v1/route          body: RouteRequest -> RouteResult
    POST /v1/diagnose       body: DiagnoseRequest -> Diagnosis (can routing pay on this data?)
    GET  /v1/routes/{id}    a persisted Route result
    GET  /v1/routes/{id}/report   the route explained, one offline HTML page
    GET  /v1/runs           training runs recorded in ppm (?experiment=...)
    GET  /docs              OpenAPI documentation (Swagger UI served from the image: no CDN)
    GET  /healthz           ready: the router answers its health check (503 otherwise)
    GET  /livez             the process is alive
    GET  /metrics           Prometheus metrics

A bearer token is required when HYPER_GATEWAY_TOKEN is set; with HYPER_GATEWAY_FORWARD_TOKENS each
user's own token is passed on, and the services' access policy decides what that user may do.
"""

from __future__ import annotations

import hmac
import time
from http import HTTPStatus
from typing import Annotated

import grpc
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_client import Counter, Histogram, make_asgi_app
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from hyper.api import proto_convert
from hyper.api.clients import PPMClient, RouterClient
from hyper.api.messages import (
    MAX_PAGE,
    MAX_REPORT_SAMPLE,
    OPTIONAL_NAME,
    ROUTE_ID,
    DiagnoseRequest,
    Diagnosis,
    RouteRequest,
    RouteResult,
    field_path,
)
from hyper.api.serving import ON_BEHALF_OF, health_status
from hyper.core.settings import Settings

REQUESTS = Counter("hyper_gateway_requests_total", "HTTP requests answered by the gateway.",
                   ["method", "route", "code"])
REQUEST_SECONDS = Histogram("hyper_gateway_request_duration_seconds", "HTTP request handling time.",
                            ["method", "route"],
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))

HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
               grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.UNAUTHENTICATED: 401,
               grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
               grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504}


class Run(BaseModel):
    """A training run recorded in ppm."""

    run_id: str
    experiment: str
    state: str
    eval_score: float
    n_human: int
    n_total: int
    failure_reason: str
    metrics: dict[str, float]


class Runs(BaseModel):
    runs: list[Run]


class ErrorDetail(BaseModel):
    code: str  # the gRPC status name, e.g. INVALID_ARGUMENT
    message: str  # names the field where the request is at fault, e.g. "budget.fraction: ..."


class ErrorBody(BaseModel):
    """Every refusal's body, whatever its status."""

    error: ErrorDetail


# What every /v1 operation may answer besides 200, so that a client generated from the
# document knows them (FastAPI would list only 422, which the gateway never sends).
ERRORS = {status: {"model": ErrorBody, "description": description} for status, description in (
    (400, "a field of the request is invalid (named in the message)"), (401, "a valid bearer token is required"),
    (403, "the caller may not call this (the access policy)"), (404, "no such route or model"),
    (409, "the request needs something not in place yet"),
    (429, "the service is busy: retry later"), (503, "a service behind the gateway is unavailable"),
    (504, "the request ran out of time behind the gateway"), (500, "an error inside a service"))}
# An operation with a body: the body may be too large.
BODY_ERRORS = ERRORS | {413: {"model": ErrorBody, "description": "the body is larger than a gRPC message may be "
                                                                  "(HYPER_MAX_MESSAGE_MB)"}}
# The same for an operation that answers HTML: its refusals are still JSON.
HTML_ERRORS = {status: {"description": response["description"], "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}} for status, response in ERRORS.items()}


# What the router mints, stated in the document so that a generated client knows it too.
RouteId = Annotated[str, FastAPIPath(pattern=f"^{ROUTE_ID.pattern}$", description="a route id: 32 hex digits")]


def methods_of(app: FastAPI, path: str) -> list[str]:
    """Every method some route of the app serves at this path."""
    return sorted({method for route in app.routes if isinstance(route, APIRoute) and route.path_regex.match(path)
                   for method in route.methods})


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


class BodyLimit:
    """Refuses (413) a request body over `limit` bytes, declared or streamed, before it is held
    in memory whole: the body is read through this, a chunk at a time."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if max(received, int(declared) if declared.isdigit() else 0) > self.limit:
                raise StarletteHTTPException(413, f"the body is over {self.limit // 2**20} MiB, the most a "
                                                  "request may carry (HYPER_MAX_MESSAGE_MB)")
            return message

        return await self.app(scope, limited, send)


def unauthenticated(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def forwarded_token(authorization: str) -> str:
    """The user's own token, which the router and ppm check against their access policy."""
    token = authorization.removeprefix("Bearer ")
    if token == authorization or not token.isascii() or not token.strip() or token != token.strip():
        raise unauthenticated("a bearer token is required: yours, which the access policy names "
                              "(HYPER_GATEWAY_FORWARD_TOKENS)")
    return token


def create_app(settings: Settings) -> FastAPI:
    # FastAPI's own /docs loads Swagger UI from a CDN, which a cluster without internet cannot reach.
    app = FastAPIOffline(title="HyPER routing", version="1",
                         description="Route preference pairs to human or AI annotation.")
    router = RouterClient.connect(settings)
    ppm = PPMClient.connect(settings)

    # async: what it sets in ON_BEHALF_OF is copied into the thread the operation then runs in
    async def authorised(authorization: str = Header(default="")) -> None:
        if settings.gateway_forward_tokens:
            ON_BEHALF_OF.set(forwarded_token(authorization))
            return
        expected = f"Bearer {settings.gateway_token}"
        # bytes: compare_digest refuses non-ASCII str, and a header may carry any byte
        if settings.gateway_token and not hmac.compare_digest(authorization.encode(), expected.encode()):
            raise unauthenticated("a valid bearer token is required")

    app.add_middleware(BodyLimit, limit=settings.max_message_mb * 2**20)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = route.path if route is not None else "unmatched"  # templated: bounded labels
        REQUESTS.labels(request.method, path, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(request.method, path).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(grpc.RpcError)
    async def grpc_error(request: Request, error: grpc.RpcError) -> JSONResponse:
        return JSONResponse(status_code=HTTP_STATUS.get(error.code(), 500),
                            content=error_body(error.code().name, error.details() or ""))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {401: "UNAUTHENTICATED", 404: "NOT_FOUND"}.get(error.status_code, HTTPStatus(error.status_code).name)
        headers = error.headers
        if error.status_code == 405:  # Starlette names the methods of one route of the path only
            headers = {**(headers or {}), "Allow": ", ".join(methods_of(app, request.url.path))}
        return JSONResponse(status_code=error.status_code, content=error_body(code, str(error.detail)),
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{field_path(tuple(p for p in e['loc'] if p != 'body')) or 'body'}: {e['msg']}"
                    for e in error.errors()[:5]]
        return JSONResponse(status_code=400, content=error_body("INVALID_ARGUMENT",
                                                                "; ".join(problems)))

    @app.post("/v1/route", dependencies=[Depends(authorised)], responses=BODY_ERRORS)
    def route(body: RouteRequest) -> RouteResult:
        """Route(dataset, budget): which pairs go to humans, which to the AI judge."""
        return proto_convert.route_result_from_proto(router.route(proto_convert.route_request_to_proto(body)))

    @app.post("/v1/diagnose", dependencies=[Depends(authorised)], responses=BODY_ERRORS)
    def diagnose(body: DiagnoseRequest) -> Diagnosis:
        """Before spending anything: can routing pay on this data?"""
        return proto_convert.diagnosis_from_proto(router.diagnose(proto_convert.diagnose_request_to_proto(body)))

    @app.get("/v1/routes/{route_id}", dependencies=[Depends(authorised)], responses=ERRORS)
    def get_route(route_id: RouteId,
                  page_token: str = Query("", pattern=r"^[0-9]*$", description="a previous page's next_page_token"),
                  page_size: int = Query(0, ge=0, le=MAX_PAGE, description="0: the router's default")) -> RouteResult:
        """A Route result as it was persisted when it was made, with one page of its
        assignments: the first, or the one `page_token` (a previous page's next_page_token)
        starts."""
        return proto_convert.route_result_from_proto(router.get_route(route_id, page_size, page_token))

    @app.delete("/v1/routes/{route_id}", dependencies=[Depends(authorised)], responses=ERRORS, status_code=204)
    def delete_route(route_id: RouteId) -> Response:
        """A saved route and its assignments, deleted for good."""
        router.delete_route(route_id)
        return Response(status_code=204)

    @app.get("/v1/routes/{route_id}/report", dependencies=[Depends(authorised)], responses=HTML_ERRORS,
             response_class=HTMLResponse)
    def report(route_id: RouteId, sample: int = Query(10, ge=0, le=MAX_REPORT_SAMPLE)) -> HTMLResponse:
        """The route explained: budget curve, PPM skill, feature shares, judge confidence, a sample."""
        return HTMLResponse(router.report(route_id, sample))

    @app.get("/v1/runs", dependencies=[Depends(authorised)], responses=ERRORS)
    def runs(experiment: str = Query("", pattern=OPTIONAL_NAME, description="one experiment's runs; empty: "
                                                                            "every experiment's")) -> Runs:
        """Training runs recorded in ppm, with their state and score."""
        return Runs(runs=[Run.model_validate(proto_convert.message_to_dict(run, with_defaults=True))
                          for run in ppm.list_runs(experiment)])

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        status = health_status(settings.address("router"), settings)
        return JSONResponse(status_code=200 if status == "SERVING" else 503,
                            content={"router": status})

    @app.get("/livez")
    def livez() -> dict:
        return {"status": "alive"}

    app.mount("/metrics", make_asgi_app())
    app.openapi = lambda: without_validation_error(app)
    return app


def without_validation_error(app: FastAPI) -> dict:
    """The OpenAPI document without the 422 FastAPI lists on every operation: the gateway
    answers an invalid request with 400 and the error body instead."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
