"""The system run from its images with podman: tagger, ppm, router and gateway containers on
the host network, each non-root (uid 10001) with a read-only root filesystem and only the state volume
and a /tmp tmpfs writable; then health over gRPC, a Route, and a trainer Job's container
recording its runs in ppm. Shared by the test suite and `make bench-reliability`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from harness.local import free_ports
from harness.models import known_ppm
from hyper.api import proto_convert, serving
from hyper.api.clients import PPMClient, RouterClient
from hyper.core.catalogue import FEATURE_NAMES
from hyper.core.schema import Instance
from hyper.core.settings import Settings
from hyper.method.performance_models import QuadraticForm
from hyper.method.run_spec import ProxySpec, RunSpec, save_mixes
from hyper.v1 import common_pb2, router_pb2
from hyper.workflows.training_loop import write_plain_jsonl
from hyper_ppm.store import ModelRegistry
from scripts import images
from scripts.dependencies import PROJECT, SERVICE_EXTRAS, canonical, closure

STATE = "/var/lib/hyper"
# A module per heavy dependency: which images may import it follows from their extras.
PROBES = {"torch": "torch", "jax": "jax", "sklearn": "scikit-learn", "fastapi": "fastapi", "pyarrow": "pyarrow"}


def container_args(name: str, home: Path, env: dict[str, str]) -> list[str]:
    flags = ["--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp", "--user", "10001",
             "--volume", f"{home}:{STATE}"]
    return flags + [a for key, value in env.items() for a in ("--env", f"{key}={value}")]


def importable(service: str) -> dict[str, bool]:
    """Which probe modules the service's image can import."""
    code = ("import importlib.util, json; "
            f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {list(PROBES)}}}))")
    done = images.podman("run", "--rm", "--network", "none", "--read-only", images.image_name(service),
                         "python", "-c", code, capture=True)
    return json.loads(done.stdout)


def unexpected_modules(service: str) -> dict[str, bool]:
    """Probe modules whose presence in the image differs from what its extra brings."""
    extra = SERVICE_EXTRAS[f"hyper_{service.replace('-', '_')}"]
    expected = closure(PROJECT, frozenset({extra}))
    found = importable(service)
    return {m: found[m] for m, dist in PROBES.items() if found[m] != (canonical(dist) in expected)}


@dataclasses.dataclass
class ContainerSystem:
    settings: Settings
    home: Path
    names: list[str]

    @classmethod
    @contextlib.contextmanager
    def running(cls, directory: Path):
        home = directory / "home"
        home.mkdir(parents=True, exist_ok=True)
        names = ("tagger_port", "ppm_port", "router_port", "gateway_port")
        settings = Settings(home=home, **dict(zip(names, free_ports(4), strict=True)))
        ppm = known_ppm(list(FEATURE_NAMES), QuadraticForm(0.6, np.full(len(FEATURE_NAMES), 1e-4)))
        ModelRegistry(settings.ppm_dir).save("images", ppm.to_json())
        home.chmod(0o777)
        for path in home.rglob("*"):
            path.chmod(0o777)
        env = {"HYPER_HOME": STATE, "HYPER_DATA_ROOTS": STATE, "HYPER_TAGGER_PORT": str(settings.tagger_port),
               "HYPER_PPM_PORT": str(settings.ppm_port), "HYPER_ROUTER_PORT": str(settings.router_port),
               "HYPER_GATEWAY_PORT": str(settings.gateway_port),
               "HYPER_TAGGER_METRICS_PORT": "0", "HYPER_PPM_METRICS_PORT": "0", "HYPER_ROUTER_METRICS_PORT": "0"}
        started = []
        try:
            for service in ("ppm", "tagger", "router", "gateway"):
                name = f"hyper-{service}-{uuid.uuid4().hex[:6]}"
                images.podman("run", "--detach", *container_args(name, home, env), images.image_name(service),
                              capture=True)
                started.append(name)
            yield cls(settings, home, started)
        finally:
            for name in started:
                images.podman("rm", "--force", name, capture=True, check=False)

    def wait_serving(self, timeout: float = 300) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        status = {}
        for service in ("ppm", "tagger", "router"):
            while time.monotonic() < deadline:
                status[service] = serving.health_status(self.settings.address(service), self.settings)
                if status[service] == "SERVING":
                    break
                time.sleep(1)
        return status

    def gateway_ready(self, timeout: float = 120) -> bool:
        """The gateway container answers /healthz (it checks the router) and lists runs."""
        base = f"http://127.0.0.1:{self.settings.gateway_port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz").status_code == 200:
                    return httpx.get(f"{base}/v1/runs").status_code == 200
            time.sleep(1)
        return False

    def route(self, pairs: list[Instance]) -> router_pb2.RouteResponse:
        inline = common_pb2.InstanceList(instances=[proto_convert.instance_to_proto(i) for i in pairs])
        request = router_pb2.RouteRequest(dataset=common_pb2.Dataset(inline=inline), ppm_model="images",
                                          budget=router_pb2.Budget(fraction=0.25), strategy="topk")
        with serving.channel(self.settings.address("router"), self.settings) as channel:
            return RouterClient(channel).route(request, timeout=300)

    def train_job(self, pairs: list[Instance]) -> tuple[int, list[str]]:
        """The trainer image runs a proxy-mode Job of two runs; (exit code, states in ppm)."""
        job = self.home / "job"
        job.mkdir(exist_ok=True)
        pool = [dataclasses.replace(i, labels={"human": i.labels["human"], "ai": i.labels["human"]})
                for i in pairs[:40]]
        write_plain_jsonl(job / "pool.jsonl", pool)
        write_plain_jsonl(job / "eval.jsonl", pairs[40:70])
        save_mixes(job / "mixes.npz", ["img-r0", "img-r1"], [i.id for i in pool],
                   np.array([[True] * 40, [False] * 40]), np.zeros((2, 2)), ["f0", "f1"])
        spec = RunSpec(experiment="images", pool=f"{STATE}/job/pool.jsonl", eval=f"{STATE}/job/eval.jsonl",
                       mixes=f"{STATE}/job/mixes.npz", ppm_address=self.settings.address("ppm"),
                       proxy=ProxySpec(steps=2), cache_dir=f"{STATE}/cache")
        (job / "spec.json").write_text(spec.model_dump_json())
        for path in [job, *job.iterdir()]:
            path.chmod(0o777)
        done = images.podman("run", "--rm", *container_args(f"hyper-job-{uuid.uuid4().hex[:6]}", self.home, {}),
                             images.image_name("rm-trainer"), "rm-trainer", "--spec", f"{STATE}/job/spec.json",
                             capture=True, check=False)
        with serving.channel(self.settings.address("ppm"), self.settings) as channel:
            states = [r.state for r in PPMClient(channel).list_runs("images")]
        return done.returncode, states
