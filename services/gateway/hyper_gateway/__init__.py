"""REST gateway: the Route API over HTTP for clients that do not speak gRPC."""
