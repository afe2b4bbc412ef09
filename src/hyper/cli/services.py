"""`hyper up | down | status | health`: the embedded default's services as local processes, and
a gRPC health check of any server."""

from __future__ import annotations

import argparse
import sys
import time

from hyper.api.serving import health_status
from hyper.core.settings import Settings
from hyper.infra.local_processes import STOP_TIMEOUT_S, LocalProcesses


def up(settings: Settings) -> None:
    start = time.monotonic()
    state = LocalProcesses(settings).up()
    for service, entry in state.items():
        print(f"{service:7s} pid {entry['pid']:<7d} grpc {entry['address']}  "
              f"metrics :{entry['metrics_port']}  log {entry['log']}")
    print(f"up in {time.monotonic() - start:.1f} s")
    print(access_line(settings))


def access_line(settings: Settings) -> str:
    if settings.access_policy:
        return f"access: the callers of {settings.access_policy}"
    if settings.local_access == "open":
        return "access: open to every local user (HYPER_LOCAL_ACCESS=open)"
    return (f"access: holders of {settings.home.resolve() / 'access' / 'token'} (readable by you alone; "
            "clients with this home present it)")


def cmd_up(args: argparse.Namespace, settings: Settings) -> None:
    up(settings)


def cmd_down(args: argparse.Namespace, settings: Settings) -> None:
    processes = LocalProcesses(settings)
    ended = processes.down()
    print("stopped: " + (", ".join(ended) if ended else "nothing was running"))
    for service in (s for s, how in ended.items() if how == "killed"):
        print(f"{service} did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM and was killed: the end of its log, "
              f"{processes.log_path(service)}, says what held it")


def cmd_status(args: argparse.Namespace, settings: Settings) -> None:
    for service, status in LocalProcesses(settings).status().items():
        print(f"{service:7s} {status}")


def cmd_health(args: argparse.Namespace, settings: Settings) -> None:
    """A gRPC health check that exits non-zero unless SERVING: the pods' probe where the
    cluster has no gRPC probes (Kubernetes < 1.24) or the service speaks TLS."""
    status = health_status(args.address, settings, timeout=args.timeout)
    print(f"{args.address} {status}")
    if status != "SERVING":
        sys.exit(1)


def health_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", help="host:port")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.set_defaults(run=cmd_health)


PARSERS = {"up": lambda parser: parser.set_defaults(run=cmd_up),
           "down": lambda parser: parser.set_defaults(run=cmd_down),
           "status": lambda parser: parser.set_defaults(run=cmd_status),
           "health": health_parser}
