"""`hyper`: the command line of the embedded default (and a gRPC client of any deployment)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import grpc
import numpy as np

from hyper import dataset_files, logs
from hyper.atomic import write_json_atomic
from hyper.config import Settings
from hyper.errors import HyperError, InvalidArgument
from hyper.jobs import JobFailed
from hyper.route_api import STRATEGIES, RouteOptions, RouteRequest, RouteResult, validated

log = logging.getLogger("hyper")
USER_ERRORS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


def parse_budget(text: str) -> dict:
    """"0.25" or "25%" is a fraction, "500" a count of paid annotations, "$1200" money."""
    try:
        if text.startswith("$"):
            return {"money": float(text[1:])}
        if text.endswith("%"):
            return {"fraction": float(text[:-1]) / 100.0}
        if "." in text or "e" in text.lower():
            return {"fraction": float(text)}
        return {"count": int(text)}
    except ValueError:
        raise InvalidArgument("--budget", f"{text!r} is not a fraction (0.25, 25%), a count "
                                          "(500) or money ($1200)") from None


def parse_sources(pairs: list[str]) -> list[dict]:
    sources = []
    for pair in pairs:
        name, sep, cost = pair.partition("=")
        try:
            sources.append({"name": name, "cost": float(cost) if sep else 1.0})
        except ValueError:
            raise InvalidArgument("--source", f"{pair!r} is not NAME or NAME=COST") from None
    return sources


def parse_columns(pairs: list[str]) -> dict[str, str]:
    columns = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise InvalidArgument("--column", f"{pair!r} is not FIELD=COLUMN")
        columns[field] = column
    return columns


def route_request(args, budget_curve: bool = False) -> RouteRequest:
    """The typed request the flags describe; its checks name the field, as over gRPC."""
    ref = {"path": str(Path(args.data).resolve()), "format": args.format,
           "columns": parse_columns(args.column), "skip_bad_rows": args.skip_bad_rows}
    request = {"dataset": {"ref": ref}, "budget": parse_budget(args.budget),
               "strategy": args.strategy, "seed": args.seed, "n_candidates": args.candidates,
               "ppm_model": args.ppm_model, "ppm_version": args.ppm_version,
               "epsilon": args.epsilon, "interval_level": args.interval,
               "budget_curve": budget_curve, "curve_points": args.points}
    if args.source:
        request["sources"] = parse_sources(args.source)
    if args.human_cost_base or args.human_cost_per_1k_tokens:
        request["human_cost_model"] = {"base": args.human_cost_base,
                                       "per_1k_tokens": args.human_cost_per_1k_tokens}
    return validated(RouteRequest, request)


def call_route(args, settings: Settings, budget_curve: bool = False) -> RouteResult:
    from hyper import serving, wire
    from hyper.clients import RouterClient

    client = RouterClient(serving.channel(settings.address("router"), settings))
    response = client.route(wire.route_request_to_proto(route_request(args, budget_curve)))
    return wire.route_result_from_proto(response)


def routing_summary(result: RouteResult) -> dict:
    """The result file's content: the summary keys first, then every assignment."""
    return {"budget": result.budget_fraction, "n_instances": result.n_instances,
            "n_human": result.n_human, "predicted_score": result.predicted_score,
            "predicted_interval": [result.predicted_lower, result.predicted_upper],
            "interval_level": result.interval_level, "ppm_version": result.ppm_version,
            "strategy": result.strategy, "n_skipped_rows": result.n_skipped_rows,
            "n_by_source": result.n_by_source, "total_cost": result.total_cost,
            "budget_curve": [point.model_dump() for point in result.budget_curve],
            "optimal_budget_fraction": result.optimal_budget_fraction,
            "route_id": result.route_id,
            "assignments": [assignment.model_dump() for assignment in result.assignments]}


def print_route(summary: dict) -> None:
    n = summary["n_instances"]
    print(f"strategy         {summary['strategy']}")
    print(f"instances        {n}" + (f" ({summary['n_skipped_rows']} bad rows skipped)"
                                     if summary["n_skipped_rows"] else ""))
    for source, count in sorted(summary["n_by_source"].items()):
        print(f"routed to {source:<6s} {count} ({count / max(n, 1):.1%})")
    lower, upper = summary["predicted_interval"]
    print(f"predicted score  {summary['predicted_score']:.4f}  "
          f"[{lower:.4f}, {upper:.4f}] at {summary['interval_level']:.0%}  "
          f"(PPM {summary['ppm_version']})")
    print(f"cost             {summary['total_cost']:g}")
    top = sorted(summary["assignments"], key=lambda a: -a["gain"])[:5]
    print("largest gains    " + ", ".join(f"{a['id']} ({a['gain']:+.2e})" for a in top))


def cmd_route(args, settings: Settings) -> dict:
    result = call_route(args, settings)
    summary = routing_summary(result)
    if args.out:
        write_json_atomic(args.out, summary)
    if args.json:
        print(result.model_dump_json(indent=1))
    else:
        print_route(summary)
        if args.out:
            print(f"written to       {args.out}")
    return summary


def cmd_curve(args, settings: Settings) -> dict:
    """Route with the budget curve, then plot it (PNG) and save the points (JSON)."""
    from hyper.plots import plot_budget_curve

    summary = routing_summary(call_route(args, settings, budget_curve=True))
    del summary["assignments"]
    png = Path(args.out)
    plot_budget_curve(summary["budget_curve"], summary["optimal_budget_fraction"], png,
                      f"{Path(args.data).name}: {args.strategy}, PPM {summary['ppm_version']}")
    write_json_atomic(str(png.with_suffix(".json")), summary)
    print(f"{'budget':>7s} {'predicted':>10s} {'interval':>21s} {'paid':>6s}")
    for p in summary["budget_curve"]:
        print(f"{p['budget_fraction']:7.0%} {p['predicted']:10.4f} "
              f"[{p['lower']:.4f}, {p['upper']:.4f}] {p['n_paid']:6d}")
    print(f"best budget {summary['optimal_budget_fraction']:.0%}; plot {png}, "
          f"points {png.with_suffix('.json')}")
    return summary


def cmd_judge_train(args, settings: Settings) -> None:
    """Trains the CPU AI judge on a file's human labels and saves it where the tagger looks."""
    from hyper.embeddings import SentenceEmbedder
    from hyper.judge import save_judge
    from hyper.judge_training import train_judge
    from hyper.pairs import encode_pairs
    from hyper.run_spec import ProxySpec

    dataset = dataset_files.read_dataset(args.data, args.format, parse_columns(args.column),
                                  args.skip_bad_rows)
    labelled = [i for i in dataset.instances if "human" in i.labels]
    if not labelled:
        raise InvalidArgument("data", "has no human labels to train a judge on")
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir)
    phi_a, phi_b = encode_pairs(labelled, embedder, show_progress=True)
    judge = train_judge(phi_a, phi_b, [i.labels["human"] for i in labelled],
                        ProxySpec(seed=args.seed), embedder.model_name)
    save_judge(judge, settings.judge_file)
    print(f"judge trained on {len(labelled)} pairs; cross-fitted agreement with humans "
          f"{judge.agreement_with_human:.1%}; saved to {settings.judge_file}")


def cmd_annotate(args, settings: Settings) -> None:
    """AI labels from the tagger's judge, written as a plain-format file (label_ai and
    judge_confidence added; the `uncertainty` strategy reads the confidences)."""
    import dataclasses

    from hyper import serving
    from hyper.clients import TaggerClient
    from hyper.loop import write_plain_jsonl

    dataset = dataset_files.read_dataset(args.data, args.format, parse_columns(args.column),
                                  args.skip_bad_rows)
    client = TaggerClient(serving.channel(settings.address("tagger"), settings))
    judgements = client.annotate(dataset.instances)
    labelled = [dataclasses.replace(i, labels=dict(i.labels, ai=j.label), judge_confidence=j.confidence)
                for i, j in zip(dataset.instances, judgements, strict=True)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_plain_jsonl(out, labelled)
    agreeing = [i.labels["ai"] == i.labels["human"] for i in labelled if "human" in i.labels]
    print(f"annotated {len(labelled)} pairs -> {out}"
          + (f"; agreement with human labels {np.mean(agreeing):.1%}" if agreeing else ""))


def _job_settings(args):
    from hyper.jobs import JobSettings

    overrides = {k: v for k, v in {"accelerator": args.accelerator, "image": args.image,
                                   "namespace": args.namespace, "local_workers": args.workers}.items()
                 if v is not None}
    return JobSettings(**overrides)


def _manifests(args, settings):
    from hyper.jobs import render_job, spec_run_name

    manifests = []
    for spec in args.specs:
        run, experiment = spec_run_name(Path(spec))
        manifests.append(render_job(run, args.spec_path_in_cluster or str(Path(spec).resolve()),
                                    settings, experiment))
    return manifests


def cmd_jobs_render(args, settings: Settings) -> None:
    """Writes one Job manifest per spec, for `kubectl create -f DIR`."""
    from hyper.jobs import write_manifests

    for path in write_manifests(_manifests(args, _job_settings(args)), Path(args.out)):
        print(path)


def cmd_jobs_submit(args, settings: Settings) -> None:
    from hyper.jobs import run_local, submit_kubernetes

    job_settings = _job_settings(args)
    if args.backend == "kubernetes":
        for name in submit_kubernetes(_manifests(args, job_settings), job_settings.namespace):
            print(f"created job {name} in {job_settings.namespace}")
        return
    codes = run_local([Path(s) for s in args.specs], job_settings.local_workers,
                      settings.home.resolve() / "logs" / "jobs")
    for spec, code in zip(args.specs, codes, strict=True):
        print(f"{spec}: {'succeeded' if code == 0 else f'failed (exit {code})'}")
    if any(codes):
        raise JobFailed(f"{sum(1 for c in codes if c)} of {len(codes)} jobs failed; logs in "
                        f"{settings.home.resolve() / 'logs' / 'jobs'}")


def cmd_jobs_status(args, settings: Settings) -> None:
    """Runs recorded in ppm, with their state and score."""
    from hyper import serving
    from hyper.clients import PPMClient

    runs = PPMClient(serving.channel(settings.address("ppm"), settings)).list_runs(args.experiment)
    print(f"{'run':<44s} {'state':<10s} {'score':>7s} {'human':>6s}  reason")
    for run in runs:
        score = f"{run.eval_score:.4f}" if run.state == "succeeded" else ""
        print(f"{run.run_id[:44]:<44s} {run.state:<10s} {score:>7s} {run.n_human:6d}  "
              f"{run.failure_reason[:60]}")
    states = [r.state for r in runs]
    print(f"{len(runs)} runs: {states.count('succeeded')} succeeded, {states.count('failed')} failed")


def cmd_inspect(args, settings: Settings) -> None:
    """Validates a file as Route would read it and summarises what it holds."""
    from collections import Counter


    dataset = dataset_files.read_dataset(args.data, args.format, parse_columns(args.column),
                                  args.skip_bad_rows)
    print(f"format      {dataset.format}")
    print(f"instances   {len(dataset)}" + (f" ({dataset.n_skipped} bad rows skipped)"
                                           if dataset.n_skipped else ""))
    sources = Counter(source for i in dataset.instances for source in i.labels)
    for source in sorted(sources):
        labels = Counter(i.labels[source] for i in dataset.instances if source in i.labels)
        print(f"label {source:<6s}" + "  ".join(f"{k}: {labels[k]}" for k in ("A", "B", "tie")))
    with_confidence = sum(i.judge_confidence is not None for i in dataset.instances)
    print(f"judge confidence on {with_confidence} instances")


def cmd_up(args, settings: Settings) -> None:
    from hyper.local import LocalProcesses

    start = time.monotonic()
    state = LocalProcesses(settings).up()
    for service, entry in state.items():
        print(f"{service:7s} pid {entry['pid']:<7d} grpc {entry['address']}  "
              f"metrics :{entry['metrics_port']}  log {entry['log']}")
    print(f"up in {time.monotonic() - start:.1f} s")


def cmd_down(args, settings: Settings) -> None:
    from hyper.local import LocalProcesses

    stopped = LocalProcesses(settings).down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def cmd_status(args, settings: Settings) -> None:
    from hyper.local import LocalProcesses

    for service, status in LocalProcesses(settings).status().items():
        print(f"{service:7s} {status}")


def cmd_health(args, settings: Settings) -> None:
    """A gRPC health check that exits non-zero unless SERVING: the pods' probe where the
    cluster has no gRPC probes (Kubernetes < 1.24) or the service speaks TLS."""
    from hyper.serving import health_status

    status = health_status(args.address, settings, timeout=args.timeout)
    print(f"{args.address} {status}")
    if status != "SERVING":
        sys.exit(1)


def cmd_train(args, settings: Settings):
    from hyper import serving
    from hyper.clients import PPMClient, TaggerClient
    from hyper.loop import LoopConfig, run_loop

    dataset = dataset_files.read_dataset(args.data, args.format, parse_columns(args.column),
                                  args.skip_bad_rows)
    config = LoopConfig(n_candidates=args.mixes, seed=args.seed, model=args.ppm_model or "default",
                        kind=args.ppm_kind, n_bootstrap=args.bootstrap)
    result = run_loop(dataset, config, settings,
                      TaggerClient(serving.channel(settings.address("tagger"), settings)),
                      PPMClient(serving.channel(settings.address("ppm"), settings)))
    print(json.dumps(asdict(result), indent=1))
    return result


def cmd_demo(args, settings: Settings) -> None:
    """Up, train a PPM on the data, route it under the budget, write the result, down."""
    from hyper.local import LocalProcesses

    processes = LocalProcesses(settings)
    start = time.monotonic()
    try:
        print("== starting tagger, ppm and router", flush=True)
        cmd_up(args, settings)
        print("== training loop: AI judge, candidate mixes, proxy reward models, PPM fit", flush=True)
        result = cmd_train(args, settings)
        print(f"== routing {args.data} at budget {args.budget}", flush=True)
        args.json = False
        out, args.out = args.out, None
        summary = cmd_route(args, settings)
        write_json_atomic(out, {**summary, "training": asdict(result)})
        print("== predicted score against budget", flush=True)
        args.out = str(Path(out).with_name("budget_curve.png"))
        cmd_curve(args, settings)
        print(f"== wrote {out} and {args.out} in {time.monotonic() - start:.0f} s")
    finally:
        processes.down()


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="JSONL, JSONL.gz or Parquet file")
    parser.add_argument("--format", default="auto",
                        help="auto, hh-rlhf, multipref-raw, multipref-features or plain")
    parser.add_argument("--column", action="append", default=[], metavar="FIELD=COLUMN",
                        help="read FIELD from the file's COLUMN (repeatable)")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="drop bad rows (and report their count) instead of refusing the file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ppm-model", default="")


def _option(name: str) -> dict:
    """argparse default and help of a Route option, from its one typed source."""
    field = RouteOptions.model_fields[name]
    return {"default": field.default, "help": (field.description or "") + " (default %(default)s)"}


def _route_args(parser: argparse.ArgumentParser, budget_required: bool = True) -> None:
    parser.add_argument("--budget", required=budget_required, default="1.0",
                        help="fraction (0.25, 25%%), count (500) or money ($1200)")
    parser.add_argument("--strategy", choices=STRATEGIES, default=_option("strategy")["default"],
                        help="; ".join(f"{name}: {what}" for name, what in STRATEGIES.items()))
    parser.add_argument("--candidates", type=int, **_option("n_candidates"))
    parser.add_argument("--epsilon", type=float, **_option("epsilon"))
    parser.add_argument("--interval", type=float, **_option("interval_level"))
    parser.add_argument("--points", type=int, **_option("curve_points"))
    parser.add_argument("--source", action="append", default=[], metavar="NAME[=COST]",
                        help="a paid source (repeatable; default human=1)")
    parser.add_argument("--human-cost-base", type=float, default=0.0)
    parser.add_argument("--human-cost-per-1k-tokens", type=float, default=0.0,
                        help="human cost from length: base + this * tokens / 1000")
    parser.add_argument("--ppm-version", default="")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument("--out", default="", help="also write the result to this JSON file")


def _mixes_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mixes", type=int, default=48,
                        help="candidate mixes the training loop trains a proxy RM on")
    parser.add_argument("--ppm-kind", default="linear", choices=("linear", "quadratic", "lightgbm"))
    parser.add_argument("--bootstrap", type=int, default=20,
                        help="bootstrap refits of the PPM behind prediction intervals")


def _data_command(commands, name: str, help_text: str, run, *more_args, **defaults) -> None:
    """A subcommand that reads a dataset file, with its extra arguments and defaults."""
    parser = commands.add_parser(name, help=help_text)
    _data_args(parser)
    for add_args in more_args:
        add_args(parser)
    parser.set_defaults(run=run, **defaults)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hyper", description="Route preference pairs to human "
                                     "or AI annotation (HyPER).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start tagger, ppm and router locally").set_defaults(run=cmd_up)
    commands.add_parser("down", help="stop the local services").set_defaults(run=cmd_down)
    commands.add_parser("status", help="health of the local services").set_defaults(run=cmd_status)
    health = commands.add_parser("health", help="gRPC health check of one server (exit 1 unless SERVING)")
    health.add_argument("address", help="host:port")
    health.add_argument("--timeout", type=float, default=2.0)
    health.set_defaults(run=cmd_health)
    _data_command(commands, "inspect", "validate a dataset file and summarise it", cmd_inspect)
    _data_command(commands, "route", "call Route over gRPC and summarise the result", cmd_route,
                  _route_args)
    _data_command(commands, "curve", "predicted score against budget, as a PNG", cmd_curve,
                  lambda parser: _route_args(parser, budget_required=False), out="out/curve.png")
    judge = commands.add_parser("judge", help="the CPU AI judge").add_subparsers(
        dest="judge_command", required=True)
    _data_command(judge, "train", "train the judge on a file's human labels", cmd_judge_train)
    _data_command(commands, "annotate", "AI labels for a file, from the tagger's judge",
                  cmd_annotate, lambda parser: parser.add_argument(
                      "--out", required=True, help="plain-format JSONL to write"))
    jobs = commands.add_parser("jobs", help="rm-trainer Jobs").add_subparsers(
        dest="jobs_command", required=True)
    for name, run, help_text in (("render", cmd_jobs_render, "write Job manifests for kubectl"),
                                 ("submit", cmd_jobs_submit, "run specs locally or as Kubernetes Jobs")):
        job_parser = jobs.add_parser(name, help=help_text)
        job_parser.add_argument("specs", nargs="+", help="run spec files (JSON)")
        job_parser.add_argument("--accelerator", choices=("cpu", "gpu", "tpu"))
        job_parser.add_argument("--image")
        job_parser.add_argument("--namespace")
        job_parser.add_argument("--workers", type=int, help="local backend: jobs at a time")
        job_parser.add_argument("--spec-path-in-cluster", default="",
                                help="where the spec lies on the cluster's shared volume")
        job_parser.set_defaults(run=run)
    jobs.choices["render"].add_argument("--out", default="out/jobs")
    jobs.choices["submit"].add_argument("--backend", choices=("local", "kubernetes"), default="local")
    status = jobs.add_parser("status", help="runs recorded in ppm")
    status.add_argument("--experiment", default="")
    status.set_defaults(run=cmd_jobs_status)
    _data_command(commands, "train", "run the PPM training loop on human-labelled data",
                  cmd_train, _mixes_arg)
    _data_command(commands, "demo", "up + train + route + down, writing the result", cmd_demo,
                  _route_args, _mixes_arg, out="out/demo/routing.json")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
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
