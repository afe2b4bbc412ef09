"""Hardening, in figures: `make bench-reliability` -> out/bench/reliability.json and a table.

Everything runs against the local system as `hyper up` starts it (real processes on
loopback, a real redis-server as the tagger's cache, the REST gateway as a process):
- fuzz: generated malformed requests to every gRPC method and REST route, answers by status
  code; the bar is no INTERNAL/UNKNOWN, no crashed server, every INVALID_ARGUMENT naming its
  field in google.rpc.BadRequest;
- cli: malformed input files (truncated gzip, other encodings, mixed types, a 1 GiB line)
  through `hyper route`: a clear error, never a traceback;
- faults: services, Redis and the state directory broken on purpose (harness/faults.py);
- load: 50 clients calling Route on a 10,000-pair file with cached features for 60 s;
- overload: more concurrent long Routes than workers: the excess is refused at once, health
  answers within 100 ms meanwhile;
- contract: schemathesis (a third-party fuzzer) generates requests from the gateway's own
  OpenAPI document and checks every answer against it (no 5xx, status codes, bodies and
  headers as documented);
- images: built and run with podman where it exists here.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench.routing import progress
from harness import faults
from harness.fuzzing import SERVICES, fuzz_service, rest_bodies, valid_requests
from harness.local import free_ports
from harness.polling import wait_healthy
from hyper.api import serving
from hyper.api.clients import RouterClient
from hyper.core.schema import Instance
from hyper.data import dataset_files, ingest
from hyper.v1 import common_pb2, router_pb2

OUT = Path("out/bench/reliability.json")
DATA = Path(__file__).resolve().parents[1] / "data"
SOURCES = ("hh-rlhf-harmless-base-test.jsonl.gz", "pandalm-testset.jsonl.gz", "llmbar-mtbench.jsonl.gz")


def bundled_pairs() -> list[Instance]:
    return [i for name in SOURCES for i in dataset_files.read_dataset(DATA / name).instances]


# ------------------------------------------------------------------------------------- fuzz

@dataclasses.dataclass
class Gateway:
    url: str
    process: subprocess.Popen


def start_gateway(system: faults.System) -> Gateway:
    [port] = free_ports(1)
    env = {**os.environ, **system.settings.to_env(), "HYPER_GATEWAY_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "hyper_gateway.server"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(f"{url}/livez", process, timeout=60)
    return Gateway(url, process)


def fuzz_grpc(system: faults.System, examples: int, known: list[str], pairs: list[Instance]) -> dict:
    results = {}
    for service in SERVICES:
        pid = system.pid(service)
        began = time.monotonic()
        tally = fuzz_service(system.channel(service), service, examples, known,
                             valid_requests(pairs, faults.PPM_NAME), on_progress=lambda s, t:
                             progress(f"fuzz {s}: {t.requests} requests, {dict(t.by_code)}"))
        alive = psutil.pid_exists(pid) and serving.health_status(system.settings.address(service),
                                                                 system.settings) == "SERVING"
        results[service] = tally.to_json(crashes=0 if alive else 1) | {"seconds": round(time.monotonic() - began, 1)}
    return results


def fuzz_rest(gateway: Gateway, examples: int, data_file: str) -> dict:
    by_code: dict[str, int] = {}
    problems: list[str] = []
    client = httpx.Client(base_url=gateway.url, timeout=300)
    paths = st.sampled_from(["/v1/route", "/v1/diagnose", "/v1/routes/", "/v1/runs?experiment="])

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(paths, rest_bodies(data_file, faults.PPM_NAME), st.text(max_size=300))
    def send(path: str, body: dict, text: str) -> None:
        try:
            answer = request(path, body, text)
        except httpx.TimeoutException:  # a slow answer (a diagnose tagging a whole file), not an error code
            by_code["client timeout"] = by_code.get("client timeout", 0) + 1
            return
        by_code[str(answer.status_code)] = by_code.get(str(answer.status_code), 0) + 1
        if answer.status_code >= 500 or (answer.status_code == 400 and not answer.json()["error"]["message"]):
            problems.append(f"{path}: {answer.status_code} {answer.text[:200]}")
        if sum(by_code.values()) % 500 == 0:
            progress(f"fuzz gateway: {sum(by_code.values())} requests, {by_code}")

    def request(path: str, body: dict, text: str) -> httpx.Response:
        if path.startswith("/v1/route") and path.endswith("/"):
            return client.get(path + (urllib.parse.quote(text, safe="") or "x"))
        if "?" in path:
            return client.get(path, params={"experiment": text})
        return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})

    send()
    crashed = gateway.process.poll() is not None
    return {"requests": sum(by_code.values()), "by_code": by_code,
            "internal_or_unknown": sum(n for code, n in by_code.items() if code.startswith("5")),
            "crashes": int(crashed), "examples": problems[:5]}


# -------------------------------------------------------------------------------------- cli

def malformed_files(directory: Path, big_line_mb: int) -> dict[str, Path]:
    good = b'{"prompt": "p", "response_a": "a", "response_b": "b"}\n'
    files = {
        "truncated gzip": (directory / "cut.jsonl.gz", gzip.compress(good * 5000)[:-100]),
        "UTF-16": (directory / "utf16.jsonl", (good * 3).decode().encode("utf-16")),
        "Latin-1": (directory / "latin1.jsonl", '{"prompt": "café", "response_a": "a", "response_b": "b"}\n'
                    .encode("latin-1")),
        "mixed types": (directory / "mixed.jsonl", good + b'{"prompt": 7, "response_a": ["a"], "response_b": null}\n'),
        "not Parquet": (directory / "garbage.parquet", os.urandom(4096)),
        "empty": (directory / "empty.jsonl", b""),
    }
    for path, content in files.values():
        path.write_bytes(content)
    big = directory / "one-huge-line.jsonl"
    with open(big, "wb") as out:
        out.write(good + b'{"prompt": "')
        block = b"x" * 2**20
        for _ in range(big_line_mb):
            out.write(block)
        out.write(b'", "response_a": "a", "response_b": "b"}\n' + good.replace(b'"p"', b'"q"'))
    return {name: path for name, (path, _) in files.items()} | {f"a {big_line_mb} MiB line": big}


def error_summary(text: str) -> str:
    """The error, and its first listed row when it lists them."""
    lines = text.strip().splitlines()
    return " / ".join(line.strip() for line in lines[:2]) if lines else ""


def cli_files(system: faults.System, big_line_mb: int) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(dir=system.settings.home) as directory:
        for name, path in malformed_files(Path(directory), big_line_mb).items():
            progress(f"cli: hyper route {name}")
            rss_before = psutil.Process(system.pid("router")).memory_info().rss
            began = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "hyper.cli", "route", str(path), "--budget", "0.25",
                                   "--ppm-model", faults.PPM_NAME], env={**os.environ, **system.settings.to_env()},
                                  capture_output=True, text=True, timeout=900)
            rss_after = psutil.Process(system.pid("router")).memory_info().rss
            results[name] = {"exit_code": done.returncode, "traceback": "Traceback" in done.stderr,
                             "message": error_summary(done.stderr).replace(f"{directory}/", "")[:200],
                             "seconds": round(time.monotonic() - began, 1),
                             "router_rss_growth_mb": round((rss_after - rss_before) / 2**20, 1)}
    return results


# ------------------------------------------------------------------------------- load, overload

def load_file(directory: Path, pairs: list[Instance], n: int) -> Path:
    """n pairs: the bundled ones in both orders, repeated (each copy its own id) up to n."""
    both = pairs + [dataclasses.replace(i, id=f"{i.id}-swapped", response_a=i.response_b,
                                        response_b=i.response_a, labels={}) for i in pairs]
    path = directory / f"load-{n}.jsonl"
    with open(path, "w") as out:
        for k in range(n):
            instance = dataclasses.replace(both[k % len(both)], id=f"load-{k}")
            out.write(json.dumps(ingest.plain_record(instance)) + "\n")
    return path


def route_by_ref(path: Path, budget: float = 0.25) -> router_pb2.RouteRequest:
    ref = common_pb2.DatasetRef(path=str(path), format="plain")
    return router_pb2.RouteRequest(dataset=common_pb2.Dataset(ref=ref), budget=router_pb2.Budget(fraction=budget),
                                   strategy="topk", ppm_model=faults.PPM_NAME)


def health_latencies(system: faults.System, stop: threading.Event, into: list[float]) -> None:
    """Milliseconds per health check (as the probe does it: a new connection, 1 s timeout);
    inf for one that failed."""
    while not stop.is_set():
        began = time.perf_counter()
        status = serving.health_status(system.settings.address("router"), system.settings)
        into.append(1000 * (time.perf_counter() - began) if status == "SERVING" else float("inf"))
        time.sleep(0.05)


def health_summary(milliseconds: list[float], key: str) -> dict:
    answered = [ms for ms in milliseconds if np.isfinite(ms)]
    return {"health_checks": len(milliseconds), "health_failed": len(milliseconds) - len(answered),
            key: round(float(np.percentile(answered, 99)), 1) if answered else None}


def load(system: faults.System, path: Path, clients: int, seconds: float) -> dict:
    router = RouterClient(system.channel("router"))
    progress("load: first Route tags the file (features then cached)")
    began = time.monotonic()
    router.route(route_by_ref(path), timeout=1800)
    warm_s = time.monotonic() - began
    process = psutil.Process(system.pid("router"))
    rss_before = process.memory_info().rss
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop, health_ms = threading.Event(), []

    def client() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                router.route(route_by_ref(path), timeout=120)
                latencies.append(1000 * (time.perf_counter() - start))
            except grpc.RpcError as error:
                errors[error.code().name] = errors.get(error.code().name, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    threads.append(threading.Thread(target=health_latencies, args=(system, stop, health_ms)))
    for thread in threads:
        thread.start()
    deadline, rss_mb = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        time.sleep(5)
        rss_mb.append(round(process.memory_info().rss / 2**20))
        progress(f"load: {len(latencies)} Routes, {sum(errors.values())} errors, router RSS {rss_mb[-1]} MB")
    stop.set()
    for thread in threads:
        thread.join(180)
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (float("nan"),) * 2
    rss_end = process.memory_info().rss
    time.sleep(10)  # idle: what stays is growth, what goes was in-flight work
    return {"clients": clients, "seconds": seconds, "dataset_pairs": sum(1 for _ in open(path)),
            "first_route_s": round(warm_s, 1), "requests": len(latencies) + sum(errors.values()),
            "errors": sum(errors.values()), "errors_by_code": errors,
            "routes_per_s": round(len(latencies) / seconds, 2),
            "p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1),
            "rss_growth_mb": round((rss_end - rss_before) / 2**20, 1),
            "rss_growth_after_idle_mb": round((process.memory_info().rss - rss_before) / 2**20, 1),
            "rss_mb_every_5s": rss_mb,
            "workers": system.settings.grpc_workers} | health_summary(health_ms, "health_p99_ms_under_load")


def overload(system: faults.System, pairs: list[Instance], calls: int) -> dict:
    """`calls` concurrent Routes of fresh pairs (each tags for seconds) against the router's
    HYPER_GRPC_WORKERS slots: the excess must be refused at once, health answered meanwhile."""
    router = RouterClient(system.channel("router"))
    outcomes: list[tuple[str, float]] = []
    stop, health_ms = threading.Event(), []

    def call() -> None:
        start = time.perf_counter()
        code = faults.route_code(router, faults.route_request(faults.fresh_pairs(pairs, 150)))[0]
        outcomes.append((code, 1000 * (time.perf_counter() - start)))

    checker = threading.Thread(target=health_latencies, args=(system, stop, health_ms))
    checker.start()
    threads = [threading.Thread(target=call) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    stop.set()
    checker.join()
    refused = [ms for code, ms in outcomes if code == "RESOURCE_EXHAUSTED"]
    return {"concurrent_calls": calls, "workers": system.settings.grpc_workers,
            "by_code": {c: sum(1 for code, _ in outcomes if code == c) for c in {code for code, _ in outcomes}},
            "refused_p99_ms": round(float(np.percentile(refused, 99)), 1) if refused else None,
            } | health_summary(health_ms, "health_p99_ms_saturated")


# ----------------------------------------------------------------------------------- images

def images_section(scratch: Path, pairs: list[Instance]) -> dict:
    """Every image built (cached), the system run from them, each image's contents checked."""
    from harness.container_system import ContainerSystem, unexpected_modules
    from scripts import images

    reason = images.available()
    if reason:
        return {"status": "not built", "reason": reason}
    built = images.build_all(progress)
    with ContainerSystem.running(scratch / "images") as system:
        health = system.wait_serving()
        gateway = system.gateway_ready()
        routed = system.route(pairs[:40])
        exit_code, states = system.train_job(pairs)
    ran = {"tagger": health["tagger"] == "SERVING", "ppm": health["ppm"] == "SERVING",
           "router": health["router"] == "SERVING" and len(routed.assignments) == 40,
           "rm-trainer": exit_code == 0 and states == ["succeeded", "succeeded"], "gateway": gateway}
    return {service: row | {"ran": ran[service], "unexpected_modules": unexpected_modules(service)}
            for service, row in built.items()} | {"health": health, "job_runs": states}


# ------------------------------------------------------------------------------------- main

# ------------------------------------------------------------------------------------- contract

def contract(gateway: Gateway, examples: int) -> dict:
    """schemathesis over the gateway's OpenAPI document, every check on; failures by check
    (its own report beside ours: out/bench/schemathesis.xml and .txt). The bar counts what the
    server answers: server errors and answers the document does not describe. A check about
    requests (a schema-valid request refused) is counted apart: the document cannot say which
    files exist or lie under the data roots."""
    junit = OUT.with_name("schemathesis.xml")
    junit.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(Path(sys.executable).with_name("schemathesis")), "run", f"{gateway.url}/openapi.json",
                           "--checks", "all", "--max-examples", str(examples), "--seed", "0", "--workers", "1",
                           "--report", "junit", "--report-junit-path", str(junit)],
                          capture_output=True, text=True, timeout=3600)
    junit.with_suffix(".txt").write_text(done.stdout + done.stderr)
    failures: Counter = Counter()
    operations = 0
    for case in ElementTree.parse(junit).getroot().iter("testcase") if junit.exists() else ():
        operations += 1
        for failure in case.iter("failure"):
            titles = re.findall(r"^- (ST\d+ .+)$", failure.text or "", flags=re.MULTILINE)
            failures.update(f"{title} ({case.get('name')})" for title in titles)
    generated = re.search(r"(\d+) generated", done.stdout)
    return {"operations": operations, "examples_per_operation": examples, "exit_code": done.returncode,
            "generated": int(generated.group(1)) if generated else None, "failures_by_check": dict(failures),
            "bar_failures": sum(n for title, n in failures.items() if "request" not in title.split(" (")[0].lower())}


def print_fuzz(fuzz: dict) -> None:
    print("\nfuzz            requests  INTERNAL/UNKNOWN  crashes  no-field  by code")
    for name, row in fuzz.items():
        print(f"{name:<15} {row['requests']:>8}  {row['internal_or_unknown']:>16}  {row['crashes']:>7}  "
              f"{row.get('rejections_without_field', 0):>8}  {row['by_code']}")


def print_cli(cli: dict) -> None:
    print("\ncli file                      exit  traceback  message")
    for name, row in cli.items():
        print(f"{name:<29} {row['exit_code']:>4}  {str(row['traceback']):>9}  {row['message'][:70]}")


def print_faults(rows: list) -> None:
    print("\nfault                                                          passed  detail")
    for row in rows:
        print(f"{row['name'][:62]:<62} {str(row['passed']):>6}  {json.dumps(row['detail'])[:90]}")


def print_load(lo: dict) -> None:
    print(f"\nload: {lo['clients']} clients x {lo['seconds']:.0f} s on {lo['dataset_pairs']} pairs: {lo['requests']} "
          f"Routes ({lo['routes_per_s']}/s), errors {lo['errors']}, p50 {lo['p50_ms']} ms, p99 {lo['p99_ms']} ms, "
          f"router RSS +{lo['rss_growth_mb']} MB (+{lo['rss_growth_after_idle_mb']} MB after 10 s idle), "
          f"health p99 {lo['health_p99_ms_under_load']} ms, {lo['health_failed']} of {lo['health_checks']} "
          f"health checks failed ({lo['workers']} workers)")


def print_overload(ov: dict) -> None:
    print(f"overload: {ov['concurrent_calls']} long Routes on {ov['workers']} workers: {ov['by_code']}, refusals "
          f"p99 {ov['refused_p99_ms']} ms, health p99 {ov['health_p99_ms_saturated']} ms, "
          f"{ov['health_failed']} of {ov['health_checks']} health checks failed")


def print_contract(c: dict) -> None:
    print(f"\ncontract (schemathesis, {c['operations']} operations, {c['generated']} requests): "
          f"{c['bar_failures']} server errors or undocumented answers")
    for title, n in c["failures_by_check"].items():
        print(f"  {n:>3}  {title}")


def print_images(images: dict) -> None:
    print("\nimage        built  ran    size MB  user   unexpected modules")
    for name, row in images.items():
        if isinstance(row, dict) and "built" in row:
            print(f"{name:<12} {str(row['built']):<6} {str(row['ran']):<6} {row['size_mb']:>7}  {row['user']:<6} "
                  f"{row['unexpected_modules'] or '-'}")
    if images.get("reason"):
        print(f"images: not built: {images['reason']}")


PRINTERS = {"fuzz": print_fuzz, "cli": print_cli, "faults": print_faults, "load": print_load,
            "overload": print_overload, "contract": print_contract, "images": print_images}


def print_table(report: dict) -> None:
    """Each section the report holds (a partial first run holds only the ones it ran)."""
    for section, printer in PRINTERS.items():
        if section in report:
            printer(report[section])


SECTIONS = ("fuzz", "cli", "faults", "overload", "load", "contract", "images")


def run_sections(scratch: Path, args, pairs: list[Instance]) -> dict:
    report = {}
    data_roots = os.pathsep.join([str(scratch), str(DATA.resolve())])
    data_file = str(DATA.resolve() / SOURCES[0])
    if {"fuzz", "cli", "faults", "overload", "contract"} & set(args.only):
        with faults.System.running(scratch / "fuzz", data_roots=data_roots) as system:
            if "fuzz" in args.only:
                gateway = start_gateway(system)
                try:
                    report["fuzz"] = fuzz_grpc(system, args.fuzz_examples, [data_file, faults.PPM_NAME], pairs)
                    report["fuzz"]["gateway"] = fuzz_rest(gateway, args.fuzz_examples, data_file)
                finally:
                    gateway.process.terminate()
            if "contract" in args.only:
                gateway = start_gateway(system)
                try:
                    report["contract"] = contract(gateway, args.contract_examples)
                finally:
                    gateway.process.terminate()
            if "cli" in args.only:
                report["cli"] = cli_files(system, args.big_line_mb)
            if "faults" in args.only:
                report["faults"] = [faults.router_restart(system, pairs), faults.ppm_restart(system),
                                    faults.tagger_killed(system, pairs), faults.redis_killed(system, pairs),
                                    faults.state_unwritable(system, pairs)]
            if "overload" in args.only:
                report["overload"] = overload(system, pairs, args.overload_calls)
    if "load" in args.only:
        # Enough workers for every client: the load test measures throughput, not refusals.
        with faults.System.running(scratch / "load", grpc_workers=args.clients + 8) as system:
            report["load"] = load(system, load_file(scratch / "load", pairs, args.load_pairs), args.clients,
                                  args.seconds)
    if "images" in args.only:
        report["images"] = images_section(scratch, pairs)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz-examples", type=int, default=10_000, help="per service and for the gateway")
    parser.add_argument("--big-line-mb", type=int, default=1024)
    parser.add_argument("--contract-examples", type=int, default=100, help="schemathesis examples per operation")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--load-pairs", type=int, default=10_000)
    parser.add_argument("--overload-calls", type=int, default=24)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="run these sections, keeping the others' results from the last run")
    args = parser.parse_args()
    pairs = bundled_pairs()
    report: dict = json.loads(OUT.read_text()) if OUT.exists() and set(args.only) != set(SECTIONS) else {}
    report["machine"] = f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU"
    with tempfile.TemporaryDirectory(prefix="hyper-reliability-") as scratch:
        report.update(run_sections(Path(scratch), args, pairs))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    print_table(report)


if __name__ == "__main__":
    main()
