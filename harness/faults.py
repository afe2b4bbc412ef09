"""Scripted faults against the locally running system (`hyper up`'s processes, a real
redis-server): each scenario breaks one part, checks what a user would see, and returns
{name, passed, detail}. Shared by the test suite and `make bench-reliability`."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import redis

from harness.local import free_ports
from harness.models import known_ppm
from hyper.api import proto_convert, serving
from hyper.api.clients import PPMClient, RouterClient
from hyper.core.catalogue import FEATURE_NAMES
from hyper.core.schema import Instance
from hyper.core.settings import Settings
from hyper.infra.local_processes import LocalProcesses
from hyper.method.performance_models import QuadraticForm
from hyper.v1 import common_pb2, ppm_pb2, router_pb2, tagger_pb2, tagger_pb2_grpc
from hyper_ppm.store import ModelRegistry

PPM_NAME = "faults"


class RedisServer:
    """A real redis-server on a unix socket that a scenario may kill and start again."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: `make test` installs it"
        self.process = subprocess.Popen([binary, "--port", "0", "--unixsocket", str(self.socket), "--save", "",
                                         "--appendonly", "no", "--dir", str(self.directory)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: redis.Redis.from_url(self.url).ping(), "redis-server", errors=(redis.ConnectionError,))

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.kill()


def wait(condition: Callable, what: str, timeout: float = 120, errors: tuple = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(*errors):
            if condition():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


@dataclasses.dataclass
class System:
    """The three services as processes, with Redis as the tagger's feature cache."""

    settings: Settings
    processes: LocalProcesses
    redis: RedisServer

    @classmethod
    @contextlib.contextmanager
    def running(cls, directory: Path, **overrides):
        """The system with its state under `directory` (also its data root), `overrides` on
        top of the default settings."""
        directory.mkdir(parents=True, exist_ok=True)
        redis_server = RedisServer(directory)
        redis_server.start()
        names = ("tagger_port", "ppm_port", "router_port", "tagger_metrics_port", "ppm_metrics_port",
                 "router_metrics_port")
        settings = Settings(**{"home": directory / "home", "redis_url": redis_server.url, "data_roots": str(directory),
                               **dict(zip(names, free_ports(len(names)), strict=True)), **overrides})
        ppm = known_ppm(list(FEATURE_NAMES), QuadraticForm(0.6, np.random.default_rng(0).normal(0, 1e-3,
                                                                                               len(FEATURE_NAMES))))
        ModelRegistry(settings.ppm_dir).save(PPM_NAME, ppm.to_json())
        processes = LocalProcesses(settings)
        try:
            processes.up()
            yield cls(settings, processes, redis_server)
        finally:
            processes.down()
            redis_server.stop()

    def channel(self, service: str) -> grpc.Channel:
        return serving.channel(self.settings.address(service), self.settings)

    def pid(self, service: str) -> int:
        return self.processes.status_entry(service)["pid"]

    def kill(self, service: str) -> None:
        pid = self.pid(service)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # gone (and reaped) before anyone asks whether it is up

    def restart(self, service: str) -> float:
        """Seconds until the killed service is SERVING again (`hyper up` starts what is down)."""
        began = time.monotonic()
        self.processes.up()
        return time.monotonic() - began


def fresh_pairs(instances: list[Instance], n: int) -> list[Instance]:
    """n pairs no cache has seen: the same texts with a new marker in each prompt."""
    marker = uuid.uuid4().hex[:8]
    return [dataclasses.replace(i, id=f"{marker}-{k}", prompt=f"{i.prompt} [{marker}]")
            for k, i in enumerate(instances[:n])]


def route_request(pairs: list[Instance]) -> router_pb2.RouteRequest:
    return router_pb2.RouteRequest(
        dataset=common_pb2.Dataset(inline=common_pb2.InstanceList(instances=[proto_convert.instance_to_proto(i)
                                                                             for i in pairs])),
        budget=router_pb2.Budget(fraction=0.25), strategy="topk", ppm_model=PPM_NAME)


def result(name: str, passed: bool, **detail) -> dict:
    return {"name": name, "passed": bool(passed), "detail": detail}


def router_restart(system: System, pairs: list[Instance]) -> dict:
    """A finished Route result is fetched by id after the router was killed and restarted."""
    routed = RouterClient(system.channel("router")).route(route_request(fresh_pairs(pairs, 40)))
    system.kill("router")
    seconds = system.restart("router")
    fetched = RouterClient(system.channel("router")).get_route(routed.route_id)
    same = [a.route for a in fetched.assignments] == [a.route for a in routed.assignments]
    return result("router restarted: a finished Route is fetched by id", same and fetched.route_id == routed.route_id,
                  restart_s=round(seconds, 1), assignments=len(fetched.assignments))


def ppm_restart(system: System) -> dict:
    """The served model version and every recorded run survive a killed ppm."""
    ppm = PPMClient(system.channel("ppm"))
    runs = [ppm_pb2.Run(run_id=f"r{k}", experiment="faults", state="failed", failure_reason="scripted")
            for k in range(5)]
    for run in runs:
        ppm.record_run(run)
    version = ppm.artifact(PPM_NAME)["version"]
    before = {r.run_id for r in ppm.list_runs("faults")}  # these and any recorded earlier
    system.kill("ppm")
    seconds = system.restart("ppm")
    ppm = PPMClient(system.channel("ppm"))
    kept = {r.run_id for r in ppm.list_runs("faults")}
    served = ppm.artifact(PPM_NAME)["version"]
    passed = kept == before and {r.run_id for r in runs} <= kept and served == version
    return result("ppm restarted: model version and runs survive", passed,
                  restart_s=round(seconds, 1), runs_kept=len(kept), version=served)


def tagger_killed(system: System, pairs: list[Instance], deadline_s: float = 30.0) -> dict:
    """A Route in flight when the tagger dies answers UNAVAILABLE within its deadline (the
    router's retries with backoff find no tagger), and the next Route after the restart works."""
    router = RouterClient(system.channel("router"))
    outcome: dict = {}

    def call() -> None:
        began = time.monotonic()
        try:
            router.route(route_request(fresh_pairs(pairs, 400)), timeout=deadline_s)
            outcome["code"] = "OK"
        except grpc.RpcError as error:
            outcome["code"], outcome["message"] = error.code().name, error.details()[:160]
        outcome["seconds"] = time.monotonic() - began

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)  # the tagger is computing the 400 fresh pairs' features
    system.kill("tagger")
    caller.join(deadline_s + 5)
    restart_s = system.restart("tagger")
    after = router.route(route_request(fresh_pairs(pairs, 40)))
    passed = outcome.get("code") == "UNAVAILABLE" and outcome["seconds"] < deadline_s and len(after.assignments) == 40
    return result("tagger killed during a Route: UNAVAILABLE in time, then served again", passed,
                  answered=outcome.get("code"), answered_after_s=round(outcome.get("seconds", -1), 2),
                  message=outcome.get("message", ""), restart_s=round(restart_s, 1))


def hit_rate(system: System, pairs: list[Instance]) -> float:
    stub = tagger_pb2_grpc.TaggerServiceStub(system.channel("tagger"))
    request = tagger_pb2.TagRequest(instances=[proto_convert.instance_to_proto(i) for i in pairs])
    response = stub.Tag(request, timeout=300)
    return response.cache_hits / max(1, response.cache_hits + response.cache_misses)


def redis_killed(system: System, pairs: list[Instance]) -> dict:
    """Redis dies during a Route: the Route still succeeds (the cache is bypassed, never a
    dependency); once Redis is back, repeated pairs are cache hits again."""
    warm = fresh_pairs(pairs, 60)
    hit_rate(system, warm)
    before = hit_rate(system, warm)
    router = RouterClient(system.channel("router"))
    outcome: dict = {}
    caller = threading.Thread(target=lambda: outcome.update(
        response=router.route(route_request(fresh_pairs(pairs, 200)))))
    caller.start()
    time.sleep(0.5)
    system.redis.kill()
    caller.join(300)
    during = hit_rate(system, warm)
    system.redis.start()
    hit_rate(system, warm)  # the restarted Redis is empty: this fills it
    after = hit_rate(system, warm)
    passed = "response" in outcome and len(outcome["response"].assignments) == 200 and after == 1.0
    return result("Redis killed during a Route and restarted: Route succeeds, hit rate recovers", passed,
                  hit_rate_before=before, hit_rate_while_down=during, hit_rate_after=after)


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "512k"):
    """A tmpfs mounted at `path` (needs root): a state directory that can fill up or turn read-only."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def state_unwritable(system: System, pairs: list[Instance]) -> dict:
    """The router's result store full, then read-only: Route answers UNAVAILABLE saying why,
    leaves no half-written file, and works again once space is back."""
    if os.geteuid() != 0:
        return result("state directory full / read-only", False, reason="needs root to mount a tmpfs")
    router = RouterClient(system.channel("router"))
    request = route_request(fresh_pairs(pairs, 200))
    answers = {}
    with small_filesystem(system.settings.home / "routes") as routes:
        filler = routes / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=1000"], capture_output=True, check=False)
        answers["full"] = route_code(router, request)
        leftovers = [p.name for p in routes.iterdir() if p.name != "filler"]
        filler.unlink()
        answers["space_back"] = route_code(router, request)
        subprocess.run(["mount", "-o", "remount,ro", str(routes)], check=True)
        answers["read_only"] = route_code(router, request)
        subprocess.run(["mount", "-o", "remount,rw", str(routes)], check=True)
    passed = (answers["full"][0] == answers["read_only"][0] == "UNAVAILABLE" and answers["space_back"][0] == "OK"
              and not leftovers)
    return result("state directory full / read-only: clear error, nothing half-written", passed,
                  answers={k: v[0] for k, v in answers.items()}, message=answers["full"][1],
                  leftover_files=leftovers)


def route_code(router: RouterClient, request: router_pb2.RouteRequest) -> tuple[str, str]:
    try:
        router.route(request, timeout=120)
        return "OK", ""
    except grpc.RpcError as error:
        return error.code().name, error.details()[:200]
