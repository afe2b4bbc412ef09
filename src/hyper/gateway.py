"""REST gateway for users who do not speak gRPC: a thin FastAPI layer over the router's and
ppm's gRPC APIs, with the same validation (gRPC's errors become HTTP errors naming the field).

    POST /v1/route          body: a RouteRequest as JSON (proto field names)
    GET  /v1/routes/{id}    a persisted Route result
    GET  /v1/runs           training runs recorded in ppm (?experiment=...)
    GET  /docs              OpenAPI documentation
    GET  /healthz           ready: the router answers its health check (503 otherwise)
    GET  /livez             the process is alive
    GET  /metrics           Prometheus metrics

A bearer token is required when HYPER_GATEWAY_TOKEN is set.
"""

from __future__ import annotations

import hmac
import time

import grpc
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from prometheus_client import Counter, Histogram, make_asgi_app

from hyper import serving
from hyper.clients import PPMClient, RouterClient
from hyper.config import Settings
from hyper.serving import health_status
from hyper.v1 import ppm_pb2, router_pb2

REQUESTS = Counter("hyper_gateway_requests_total", "HTTP requests answered by the gateway.",
                   ["method", "route", "code"])
REQUEST_SECONDS = Histogram("hyper_gateway_request_duration_seconds", "HTTP request handling time.",
                            ["method", "route"],
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))

HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
               grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.UNAVAILABLE: 503,
               grpc.StatusCode.DEADLINE_EXCEEDED: 504}


def as_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="HyPER routing", version="1",
                  description="Route preference pairs to human or AI annotation.")
    router = RouterClient(serving.channel(settings.address("router"), settings))
    ppm = PPMClient(serving.channel(settings.address("ppm"), settings))

    def authorised(authorization: str = Header(default="")) -> None:
        expected = f"Bearer {settings.gateway_token}"
        if settings.gateway_token and not hmac.compare_digest(authorization, expected):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})

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
                            content={"error": {"code": error.code().name, "message": error.details()}})

    @app.exception_handler(json_format.ParseError)
    async def parse_error(request: Request, error: json_format.ParseError) -> JSONResponse:
        return JSONResponse(status_code=400,
                            content={"error": {"code": "INVALID_ARGUMENT", "message": str(error)}})

    @app.post("/v1/route", dependencies=[Depends(authorised)])
    def route(body: dict) -> dict:
        """Route(dataset, budget): the request and response are RouterService's, as JSON."""
        return as_json(router.route(json_format.ParseDict(body, router_pb2.RouteRequest())))

    @app.get("/v1/routes/{route_id}", dependencies=[Depends(authorised)])
    def get_route(route_id: str) -> dict:
        return as_json(router.stub.GetRoute(router_pb2.GetRouteRequest(route_id=route_id)))

    @app.get("/v1/runs", dependencies=[Depends(authorised)])
    def runs(experiment: str = "") -> dict:
        return as_json(ppm.stub.ListRuns(ppm_pb2.ListRunsRequest(experiment=experiment)))

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        status = health_status(settings.address("router"), settings)
        return JSONResponse(status_code=200 if status == "SERVING" else 503,
                            content={"router": status})

    @app.get("/livez")
    def livez() -> dict:
        return {"status": "alive"}

    app.mount("/metrics", make_asgi_app())
    return app


def main() -> None:
    import uvicorn

    from hyper import logs

    settings = Settings()
    logs.configure("gateway", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.gateway_port)


if __name__ == "__main__":
    main()
