"""`hyper`: the command line of the embedded default (and a gRPC client of any deployment).

Each command group is a module of this package exposing PARSERS (command -> a function that
adds the command's arguments and its `run`); only the chosen command's module is imported, so
`hyper route` never loads what `hyper train` needs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import grpc

from hyper.core import logs
from hyper.core.errors import HyperError
from hyper.core.settings import Settings

# command -> (the module of hyper.cli that adds it, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("services", "start tagger, ppm and router locally"),
    "down": ("services", "stop the local services"),
    "status": ("services", "health of the local services"),
    "health": ("services", "gRPC health check of one server (exit 1 unless SERVING)"),
    "inspect": ("inspect", "validate a dataset file and summarise it"),
    "diagnose": ("routing", "can routing pay on this data? (human, AI and reference labels)"),
    "route": ("routing", "call Route over gRPC and summarise the result"),
    "curve": ("routing", "predicted score against budget, as a PNG"),
    "report": ("routing", "a route explained as one offline HTML page"),
    "routes": ("routing", "saved routes: delete (routes past HYPER_ROUTE_RETENTION_DAYS go by themselves)"),
    "judge": ("training", "the CPU AI judge"),
    "jobs": ("jobs", "rm-trainer Jobs"),
    "train": ("training", "run the PPM training loop on data with human (and AI) labels"),
    "annotate": ("labelling", "AI labels for a file from the tagger's judge (resumable)"),
    "tasks": ("labelling", "hand human-routed pairs to an annotation tool and take the labels back"),
    "export": ("labelling", "the final hybrid dataset for reward-model / DPO trainers"),
    "ppm": ("ppm", "performance prediction models: list, show, fit, export, import, promote"),
    "tag": ("tagging", "compute a dataset's features into the feature cache, in shards (local processes "
                       "or a Kubernetes Job)"),
    "rounds": ("rounds", "route new data in rounds, refitting the PPM on each round's human labels, "
                         "against routing it at once"),
    "demo": ("demo", "up, diagnose, train on a history, route a new batch, check it, down"),
}
# What a user did wrong (exit 2), not what failed (exit 1).
USER_ERRORS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


def chosen_command(argv: list[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Every command is listed; only the chosen one's arguments are added (its module imported)."""
    parser = argparse.ArgumentParser(prog="hyper", description="Route preference pairs to human "
                                     "or AI annotation (HyPER).")
    commands = parser.add_subparsers(dest="command", required=True)
    chosen = chosen_command(argv)
    for name, (module, help_text) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text)
        if name == chosen:
            importlib.import_module(f"hyper.cli.{module}").PARSERS[name](command)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    settings = Settings()
    logs.configure("cli", settings.log_level)
    try:
        args.run(args, settings)
    except HyperError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            print("(are the services running? `hyper up` starts them locally)", file=sys.stderr)
        sys.exit(2 if error.code() in USER_ERRORS else 1)


if __name__ == "__main__":
    main()
