"""Entry point of the REST gateway (its container command, `hyper-gateway`)."""

from __future__ import annotations

from hyper.core import logs
from hyper.core.settings import Settings
from hyper_gateway.app import create_app


def main() -> None:
    import uvicorn

    settings = Settings()
    logs.configure("gateway", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.gateway_port)


if __name__ == "__main__":
    main()
