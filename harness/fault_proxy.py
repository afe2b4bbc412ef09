"""An HTTP proxy on loopback that injects faults in front of a real OpenAI-compatible server:
a scripted share of requests answered 429 (with Retry-After) or 500 instead of forwarded, or,
when `refuse` is set, every request answered 400 (a fault no retry mends)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy:
    def __init__(self, upstream: str, rate_limit_every: int = 0, error_every: int = 0):
        self.upstream = upstream.rstrip("/")
        self.rate_limit_every = rate_limit_every
        self.error_every = error_every
        self.refuse = False
        self.lock = threading.Lock()
        self.received = 0
        self.faults = {"429": 0, "500": 0, "400": 0}
        self.forwarded: list[str] = []  # the user message of every request answered by the server
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fault(self) -> int | None:
        with self.lock:
            self.received += 1
            n = self.received
            code = (400 if self.refuse else 429 if self.rate_limit_every and n % self.rate_limit_every == 0
                    else 500 if self.error_every and n % self.error_every == 0 else None)
            if code:
                self.faults[str(code)] += 1
            return code

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = proxy._fault()
                if code:
                    error = json.dumps({"error": {"message": f"injected {code}", "code": code}}).encode()
                    headers = {"Content-Type": "application/json"}
                    if code == 429:
                        headers["Retry-After"] = "0"
                    return self._answer(code, error, headers)
                request = urllib.request.Request(proxy.upstream + self.path.removeprefix("/v1"), data=body,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        answer, status = response.read(), response.status
                except urllib.error.HTTPError as error:
                    answer, status = error.read(), error.code
                if status == 200:
                    with proxy.lock:
                        proxy.forwarded.append(json.loads(body)["messages"][-1]["content"])
                self._answer(status, answer, {"Content-Type": "application/json"})

        return Handler
