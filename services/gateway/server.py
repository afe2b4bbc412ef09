"""Entry point of the REST gateway (its container command, `hyper-gateway`)."""

from __future__ import annotations

from hyper import logs
from hyper.config import Settings
from hyper.gateway.app import create_app


def main() -> None:
    import uvicorn

    settings = Settings()
    logs.configure("gateway", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.gateway_port)


if __name__ == "__main__":
    main()
