"""vLLM's OpenAI-compatible server (the CPU build) serving a tiny local Llama on a loopback
port: the judge endpoint the tests and `make bench-loop` talk to."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from harness.polling import server_process
from harness.tiny_llama import make_tiny_llama

MODEL_NAME = "tiny-judge"
VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def judge_server(directory: Path, corpus: list[str]) -> Iterator[str]:
    """The server's base URL (".../v1") while the block runs; its log in directory/vllm.log."""
    model = make_tiny_llama(directory / "tiny-llama", corpus)
    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host",
               "127.0.0.1", "--port", str(port), "--served-model-name", MODEL_NAME, "--enforce-eager",
               "--max-model-len", "2048",
               # as the chart serves it: JSON replies (tags) without free whitespace between tokens
               "--structured-outputs-config", '{"backend": "guidance", "disable_any_whitespace": true}']
    env = {**os.environ, **VLLM_ENV, "VLLM_CACHE_ROOT": str(directory / "vllm-cache")}
    with server_process(command, env, f"http://127.0.0.1:{port}/health", directory / "vllm.log"):
        yield f"http://127.0.0.1:{port}/v1"
