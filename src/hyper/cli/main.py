"""`hyper`: the command line of the embedded default (and a gRPC client of any deployment)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from itertools import chain
from pathlib import Path

import grpc

from hyper.api.messages import (
    STRATEGIES,
    DiagnoseRequest,
    Diagnosis,
    RouteOptions,
    RouteRequest,
    RouteResult,
    validated,
)
from hyper.cli import labelling, ppm, rounds, tagging
from hyper.core import logs
from hyper.core.atomic_files import atomic_open, write_json_atomic
from hyper.core.errors import HyperError, InvalidArgument
from hyper.core.schema import Dataset
from hyper.core.settings import Settings
from hyper.data import dataset_files
from hyper.data.dataset_files import parse_columns
from hyper.data.label_sources import LabelRoles, sources_in
from hyper.infra.training_jobs import JobFailed
from hyper.method.performance_models import KINDS, TARGETS
from hyper.reports.route_report import best_budget_verdict

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


def route_request(args, budget_curve: bool = False) -> RouteRequest:
    """The typed request the flags describe; its checks name the field, as over gRPC."""
    ref = {"path": str(Path(args.data).resolve()), "format": args.format,
           "columns": parse_columns(args.column), "skip_bad_rows": args.skip_bad_rows}
    request = {"dataset": {"ref": ref}, "budget": parse_budget(args.budget),
               "strategy": args.strategy, "seed": args.seed, "n_candidates": args.candidates,
               "ppm_model": args.ppm_model, "ppm_version": args.ppm_version,
               "epsilon": args.epsilon, "interval_level": args.interval,
               "budget_curve": budget_curve, "curve_points": args.points,
               "ai_source": args.ai_source, "judges": args.judge, "require_skill": args.require_skill,
               "page_size": args.page_size}
    if args.source:
        request["sources"] = parse_sources(args.source)
    if args.human_cost_base or args.human_cost_per_1k_tokens:
        request["human_cost_model"] = {"base": args.human_cost_base,
                                       "per_1k_tokens": args.human_cost_per_1k_tokens}
    return validated(RouteRequest, request)


def router_client(settings: Settings):
    from hyper.api import serving
    from hyper.api.clients import RouterClient

    return RouterClient(serving.channel(settings.address("router"), settings))


def call_route(args, settings: Settings, budget_curve: bool = False) -> RouteResult:
    """The route with every assignment (for a route small enough to hold; cmd_route streams)."""
    from hyper.api import proto_convert

    client = router_client(settings)
    response = client.route(proto_convert.route_request_to_proto(route_request(args, budget_curve)))
    return proto_convert.route_result_from_proto(client.with_all_assignments(response))


def routing_summary(result: RouteResult) -> dict:
    """The result file's content: warnings and the summary first, then every assignment."""
    summary = {"warnings": result.warnings, "budget": result.budget_fraction,
               "n_instances": result.n_instances, "n_human": result.n_human,
               "n_forced_human": result.n_forced_human, "predicted_score": result.predicted_score,
               "predicted_interval": [result.predicted_lower, result.predicted_upper],
               "interval_level": result.interval_level, "ppm_version": result.ppm_version,
               "ppm_target": result.ppm_target, "ppm_skill": result.ppm_skill.model_dump(),
               "strategy": result.strategy, "n_skipped_rows": result.n_skipped_rows,
               "n_by_source": result.n_by_source, "total_cost": result.total_cost,
               "route_id": result.route_id, "ai_source": result.ai_source,
               "dataset_ref": result.dataset_ref.model_dump() if result.dataset_ref else None}
    if result.budget_curve:
        summary["budget_curve"] = [point.model_dump() for point in result.budget_curve]
        summary["optimal_budget_fraction"] = result.optimal_budget_fraction
    summary["assignments"] = [assignment.model_dump() for assignment in result.assignments]
    return summary


def print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"WARNING: {warning}\n")


def skill_text(skill: dict) -> str:
    verdict = "" if skill["ci_low"] > 0 else "  (no demonstrated skill: the interval includes 0)"
    return (f"cross-validated Spearman {skill['spearman']:.2f} [{skill['ci_low']:.2f}, "
            f"{skill['ci_high']:.2f}] over {skill['n_runs']} runs{verdict}")


def print_route(summary: dict, largest: list[dict]) -> None:
    print_warnings(summary["warnings"])
    n = summary["n_instances"]
    print(f"strategy         {summary['strategy']}")
    print(f"instances        {n}" + (f" ({summary['n_skipped_rows']} bad rows skipped)"
                                     if summary["n_skipped_rows"] else ""))
    for source, count in sorted(summary["n_by_source"].items()):
        print(f"routed to {source:<6s} {count} ({count / max(n, 1):.1%})")
    if summary["n_forced_human"]:
        print(f"                 ({summary['n_forced_human']} of them have no AI label: humans only)")
    lower, upper = summary["predicted_interval"]
    print(f"predicted        {summary['ppm_target']} {summary['predicted_score']:.4f}  "
          f"[{lower:.4f}, {upper:.4f}] at {summary['interval_level']:.0%}")
    print(f"PPM              {summary['ppm_version']}: {skill_text(summary['ppm_skill'])}")
    print(f"cost             {summary['total_cost']:g}")
    print("largest gains    " + ", ".join(f"{a['id']} ({a['gain']:+.2g})" for a in largest))


def cmd_route(args, settings: Settings) -> dict:
    """Route, then every assignment page by page: into --out as they come (a route of a million
    pairs is never held at once), and into the returned summary only for a route of one page."""
    from hyper.api import proto_convert

    client = router_client(settings)
    response = client.route(proto_convert.route_request_to_proto(route_request(args)))
    result = proto_convert.route_result_from_proto(response)
    summary = routing_summary(result)
    first_page = summary.pop("assignments")
    later_pages = client.assignment_pages(response.route_id, response.next_page_token, args.page_size)
    pages = chain([first_page], ([assignment_row(a) for a in page] for page in later_pages))
    largest = LargestGains()
    if args.out:
        write_route_file(args.out, summary, map(largest.add, chain.from_iterable(pages)))
    else:
        for row in chain.from_iterable(pages):  # read for the largest gains only
            largest.add(row)
    if response.next_page_token:
        summary["n_assignments_listed"] = len(first_page)
    summary["assignments"] = first_page
    if args.json:
        print(result.model_dump_json(indent=1))
    else:
        print_route(summary, largest.top)
        if args.out:
            print(f"written to       {args.out}")
    return summary


def assignment_row(assignment) -> dict:
    return {"id": assignment.id, "route": assignment.route, "gain": assignment.gain, "cost": assignment.cost}


class LargestGains:
    """The five assignments with the largest gains among those seen (each passed through)."""

    def __init__(self, n: int = 5):
        self.n = n
        self.top: list[dict] = []

    def add(self, row: dict) -> dict:
        if len(self.top) < self.n or row["gain"] > self.top[-1]["gain"]:
            self.top = sorted([*self.top, row], key=lambda a: -a["gain"])[: self.n]
        return row


def write_route_file(path: str, summary: dict, assignments) -> None:
    """The summary's keys, then "assignments" written row by row (the file `hyper export` and
    `hyper tasks` read); atomically, so a failed listing leaves no half file."""
    with atomic_open(Path(path), "w") as out:
        out.write(json.dumps(summary, indent=1)[:-2] + ',\n "assignments": [')
        for k, row in enumerate(assignments):
            out.write((",\n  " if k else "\n  ") + json.dumps(row))
        out.write("\n ]\n}\n")


def cmd_curve(args, settings: Settings) -> dict:
    """Route with the budget curve, then plot it (PNG) and save the points (JSON)."""
    from hyper.reports.plots import plot_budget_curve

    summary = routing_summary(call_route(args, settings, budget_curve=True))
    del summary["assignments"]
    print_warnings(summary["warnings"])
    png = Path(args.out)
    verdict = best_budget_verdict(summary["budget_curve"], summary["optimal_budget_fraction"])
    plot_budget_curve(summary["budget_curve"], summary["optimal_budget_fraction"], png,
                      f"{Path(args.data).name}: {args.strategy}, PPM {summary['ppm_version']}",
                      summary["ppm_target"], distinguishable=verdict.startswith("best"))
    write_json_atomic(str(png.with_suffix(".json")), summary | {"best_budget_verdict": verdict})
    print(f"{'budget':>7s} {'predicted':>10s} {'interval':>21s} {'paid':>6s}")
    for p in summary["budget_curve"]:
        print(f"{p['budget_fraction']:7.0%} {p['predicted']:10.4f} "
              f"[{p['lower']:.4f}, {p['upper']:.4f}] {p['n_paid']:6d}")
    print(f"{verdict}\nplot {png}, points {png.with_suffix('.json')}")
    return summary


def cmd_report(args, settings: Settings) -> None:
    """A route explained as one offline HTML page (the router builds it; the gateway serves it too)."""
    from hyper.api import serving
    from hyper.api.clients import RouterClient
    from hyper.core.atomic_files import write_text_atomic

    page = RouterClient(serving.channel(settings.address("router"), settings)).report(args.route_id, args.sample)
    write_text_atomic(args.out, page)
    print(f"report of route {args.route_id} -> {args.out} ({len(page) / 1024:.0f} KiB, self-contained)")


def cmd_diagnose(args, settings: Settings) -> Diagnosis:
    """Can routing pay on this data? Agreement, where the judge errs, error AUCs, and the label
    accuracy to expect against budget (a PNG beside the JSON)."""
    from hyper.api import proto_convert, serving
    from hyper.api.clients import RouterClient
    from hyper.reports.plots import plot_expected_accuracy

    request = validated(DiagnoseRequest, {
        "dataset": {"ref": {"path": str(Path(args.data).resolve()), "format": args.format,
                            "columns": parse_columns(args.column), "skip_bad_rows": args.skip_bad_rows}},
        "human_source": args.human_source, "ai_source": args.ai_source, "reference": args.reference,
        "judges": args.judge, "seed": args.seed})
    client = RouterClient(serving.channel(settings.address("router"), settings))
    diagnosis = proto_convert.diagnosis_from_proto(client.diagnose(proto_convert.diagnose_request_to_proto(request)))
    png = Path(args.out)
    plot_expected_accuracy(diagnosis, png, Path(args.data).name)
    write_json_atomic(png.with_suffix(".json"), diagnosis.model_dump())
    print_diagnosis(diagnosis)
    print(f"plot {png}, details {png.with_suffix('.json')}")
    return diagnosis


def interval(e) -> str:
    return f"{e.mean:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"


def print_diagnosis(diagnosis: Diagnosis) -> None:
    print(f"verdict      {diagnosis.verdict}")
    print(f"pairs        {diagnosis.n_pairs}, {diagnosis.n_scored} with a reference label")
    for note in diagnosis.notes:
        print(f"             {note}")
    for source in diagnosis.agreement:
        print(f"agreement    {source.source:<16s} {interval(source.agreement)} with the reference")
    print(f"judge errs   on {interval(diagnosis.judge_error_rate)} of the scored pairs; worst where:")
    for feature in diagnosis.worst_features:
        print(f"             {feature.feature:<48s} {interval(feature.error_rate)}  ({feature.n} pairs)")
    for auc in diagnosis.error_auc:
        print(f"error AUC    from {auc.inputs:<11s} {interval(auc.auc)}  (cross-validated; 0.5 = chance)")
    budgets = diagnosis.budgets
    shown = [k for k, b in enumerate(budgets) if round(b * 100) in (10, 25, 50, 75)]
    print("expected label accuracy at budget " + "  ".join(f"{budgets[k]:>5.0%}" for k in shown))
    for curve in diagnosis.expected_accuracy:
        print(f"             {curve.strategy:<20s} " + "  ".join(f"{curve.label_accuracy[k]:.3f}" for k in shown))


def cmd_judge_train(args, settings: Settings) -> None:
    """Trains the CPU AI judge on a file's human labels and saves it where the tagger looks."""
    from hyper.judges.saved_judge import save_judge
    from hyper.judges.training import train_judge
    from hyper.method.embeddings import SentenceEmbedder
    from hyper.method.reward_pairs import encode_pairs
    from hyper.method.run_spec import ProxySpec

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


def _job_settings(args):
    from hyper.infra.training_jobs import job_settings

    flags = {"accelerator": args.accelerator, "image": args.image, "namespace": args.namespace,
             "local_workers": args.workers, "tpu_topology": args.tpu_topology, "tpu_hosts": args.tpu_hosts,
             "tpu_chips": args.tpu_chips}
    return job_settings(**{k: v for k, v in flags.items() if v is not None})


def _manifests(args, settings):
    from hyper.infra.training_jobs import render_spec

    return [render_spec(Path(spec), args.spec_path_in_cluster or str(Path(spec).resolve()), settings)
            for spec in args.specs]


def cmd_jobs_render(args, settings: Settings) -> None:
    """Writes one Job (a JobSet for a distributed spec) manifest per spec, for `kubectl create -f DIR`."""
    from hyper.infra.training_jobs import write_manifests

    for path in write_manifests(_manifests(args, _job_settings(args)), Path(args.out)):
        print(path)


def cmd_jobs_submit(args, settings: Settings) -> None:
    from hyper.infra.training_jobs import run_local, submit_kubernetes

    job_settings = _job_settings(args)
    if args.backend == "kubernetes":
        manifests = _manifests(args, job_settings)
        for manifest, name in zip(manifests, submit_kubernetes(manifests, job_settings.namespace), strict=True):
            print(f"created {manifest['kind'].lower()} {name} in {job_settings.namespace}")
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
    from hyper.api import serving
    from hyper.api.clients import PPMClient

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

    dataset = read_data(args)
    print(f"format      {dataset.format}")
    print(f"instances   {len(dataset)}" + (f" ({dataset.n_skipped} bad rows skipped)"
                                           if dataset.n_skipped else ""))
    if dataset.notes:
        print(f"coerced     {len(dataset.notes)} values (listed above)")
    sources = Counter(source for i in dataset.instances for source in i.labels)
    for source in sorted(sources):
        labels = Counter(i.labels[source] for i in dataset.instances if source in i.labels)
        missing = len(dataset) - sources[source]
        print(f"label {source:<20s}" + "  ".join(f"{k}: {labels[k]:<5d}" for k in ("A", "B", "tie"))
              + (f"  (absent on {missing})" if missing else ""))
    with_confidence = sum(i.judge_confidence is not None for i in dataset.instances)
    print(f"judge confidence on {with_confidence} instances")


def cmd_up(args, settings: Settings) -> None:
    from hyper.infra.local_processes import LocalProcesses

    start = time.monotonic()
    state = LocalProcesses(settings).up()
    for service, entry in state.items():
        print(f"{service:7s} pid {entry['pid']:<7d} grpc {entry['address']}  "
              f"metrics :{entry['metrics_port']}  log {entry['log']}")
    print(f"up in {time.monotonic() - start:.1f} s")


def cmd_down(args, settings: Settings) -> None:
    from hyper.infra.local_processes import LocalProcesses

    stopped = LocalProcesses(settings).down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def cmd_status(args, settings: Settings) -> None:
    from hyper.infra.local_processes import LocalProcesses

    for service, status in LocalProcesses(settings).status().items():
        print(f"{service:7s} {status}")


def cmd_health(args, settings: Settings) -> None:
    """A gRPC health check that exits non-zero unless SERVING: the pods' probe where the
    cluster has no gRPC probes (Kubernetes < 1.24) or the service speaks TLS."""
    from hyper.api.serving import health_status

    status = health_status(args.address, settings, timeout=args.timeout)
    print(f"{args.address} {status}")
    if status != "SERVING":
        sys.exit(1)


def cmd_train(args, settings: Settings):
    from hyper.api import serving
    from hyper.api.clients import PPMClient, TaggerClient
    from hyper.workflows.training_loop import LoopConfig, run_loop

    dataset = read_data(args)
    config = LoopConfig(n_candidates=args.mixes, target=args.target, seed=args.seed,
                        model=args.ppm_model or "default", kind=args.ppm_kind, roles=label_roles(args),
                        paid_sources=tuple(args.paid_source))
    result = run_loop(dataset, config, settings,
                      TaggerClient(serving.channel(settings.address("tagger"), settings)),
                      PPMClient(serving.channel(settings.address("ppm"), settings)))
    if args.json:
        print(json.dumps(asdict(result), indent=1))
    else:
        print_training(result)
    return result


def print_training(result) -> None:
    for k, note in enumerate(result.notes):
        print(f"{'labels' if k == 0 else '':<11s} {note}")
    print(f"{'AI labels':<11s} {result.ai_labels}; they agree with the reference on "
          f"{result.judge_agreement:.1%} of the pool's scored pairs")
    print(f"{'mixes':<11s} {result.n_runs} scored by {result.target}: 100% human "
          f"{result.all_human_score:.4f}, 100% AI {result.all_ai_score:.4f}")
    print(f"{'PPM':<11s} {result.ppm_version}: {skill_text(result.ppm_skill)}")


def read_data(args) -> Dataset:
    """The dataset the flags name; the values read with a coercion are said, by row."""
    dataset = dataset_files.read_dataset(args.data, args.format, parse_columns(args.column),
                                         args.skip_bad_rows)
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    return dataset


def label_roles(args) -> LabelRoles:
    return LabelRoles(human=args.human_source, ai=args.ai_source, reference=tuple(args.reference),
                      judges=tuple(args.judge))


def cmd_demo(args, settings: Settings) -> None:
    """Up; diagnose the data; train a PPM on its history; route a new batch under the budget;
    check the route against random and uncertainty on the batch's known labels; down."""
    from hyper.infra.local_processes import LocalProcesses

    processes = LocalProcesses(settings)
    start = time.monotonic()
    out = Path(args.out)
    try:
        print("== starting tagger, ppm and router", flush=True)
        cmd_up(args, settings)
        dataset = read_data(args)
        print(f"\n== can routing pay on {Path(args.data).name}? (hyper diagnose)", flush=True)
        verdict = "not diagnosed: the data has no AI labels (the training loop cross-fits a judge)"
        judged = args.ai_source in sources_in(dataset.instances)
        if judged:
            args.out = str(out.with_name("diagnose.png"))
            verdict = cmd_diagnose(args, settings).verdict
        else:
            print(verdict)
        history, batch = split_demo_data(dataset, args, out.parent)
        print(f"\n== training a PPM on the history ({history.name}: pairs with human and AI labels)",
              flush=True)
        args.data = str(history)
        training = cmd_train(args, settings)
        print(f"\n== routing the new batch ({batch.name}) at budget {args.budget}", flush=True)
        args.data, args.json, args.out = str(batch), False, None
        args.ai_source = args.ai_source if judged else ""  # no AI labels: nothing to force or score
        summary = cmd_route(args, settings)
        check = (check_demo_route(args, settings, summary) if judged else
                 "not checked: without AI labels the batch's hybrid labels cannot be scored")
        if not judged:
            print(check)
        write_json_atomic(out, {**summary, "training": asdict(training), "diagnosis_verdict": verdict,
                                "batch_check": check})
        print("\n== predicted label accuracy of the batch against budget", flush=True)
        args.out = str(out.with_name("budget_curve.png"))
        cmd_curve(args, settings)
        print(f"\n== wrote {out}, {args.out} and {out.with_name('diagnose.png')} in "
              f"{time.monotonic() - start:.0f} s")
    finally:
        processes.down()


def print_benchmark_figure(path: Path, dataset: str = "pandalm", budget: float = 0.25) -> None:
    """The same comparison from `make bench-quality`, cross-fitted on every pair, when it ran."""
    if not path.is_file():
        print("benchmark        `make bench-quality` measures the same cross-fitted on every pair of "
              "three datasets, with intervals")
        return
    report = json.loads(path.read_text())["datasets"].get(dataset)
    rows = {r["strategy"]: r["label_accuracy"] for r in (report or {}).get("results", []) if r["budget"] == budget}
    for strategy in ("optimize", "uncertainty") if rows else ():
        row = rows[strategy]
        print(f"benchmark        {dataset} at {budget:.0%}, 5-fold cross-fitted ({path}): {strategy} - random "
              f"{row['diff_vs_random']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")


def split_demo_data(dataset: Dataset, args, directory: Path) -> tuple[Path, Path]:
    from hyper.workflows.demo import split_history_batch

    history, batch = split_history_batch(dataset, args.batch_fraction, args.seed, directory)
    n_batch = int(round(args.batch_fraction * len(dataset)))
    print(f"\n== split {len(dataset)} pairs: {len(dataset) - n_batch} history to learn from, {n_batch} "
          "new batch to route")
    return history, batch


def check_demo_route(args, settings: Settings, summary: dict) -> dict:
    """What a team cannot measure but the demo can: the batch's reference labels are known."""
    from hyper.workflows.demo import RANDOM_SEEDS, check_batch

    routes = [a["route"] for a in summary["assignments"]]
    strategy, seed = args.strategy, args.seed
    args.strategy = "uncertainty"  # the judge's confidence from the labels; else the tagger's judge
    uncertainty = [a.route for a in call_route(args, settings).assignments] if args.judge else None
    args.strategy = "random"
    randoms = []
    for k in range(RANDOM_SEEDS):
        args.seed = k
        randoms.append([a.route for a in call_route(args, settings).assignments])
    args.strategy, args.seed = strategy, seed
    batch = dataset_files.read_dataset(args.data, "plain")
    check = check_batch(batch, label_roles(args), routes, uncertainty, randoms)
    lower, upper = summary["predicted_interval"]
    print(f"\n== checked on the batch's reference labels ({check.n_scored} scored pairs, unseen by the PPM)")
    print(f"label accuracy   {strategy:<12s} {check.routed:.4f}   (the PPM predicted {summary['predicted_score']:.4f} "
          f"[{lower:.4f}, {upper:.4f}])")
    if check.uncertainty is not None:
        print(f"                 uncertainty  {check.uncertainty:.4f}")
    print(f"                 random       {check.random.mean:.4f}   (mean of {RANDOM_SEEDS} seeds)")
    diff = check.routed_minus_random
    print(f"routed - random  {diff.mean:+.4f}  95% interval [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}] "
          "(paired bootstrap over the batch's pairs and random's seeds)")
    print_benchmark_figure(Path("out/bench/quality.json"))
    return {"n_scored": check.n_scored, "routed": check.routed, "uncertainty": check.uncertainty,
            "random": check.random.to_json(), "routed_minus_random": diff.to_json()}


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


def _route_args(parser: argparse.ArgumentParser, budget_required: bool = True, labels: bool = True) -> None:
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
    if labels:  # (the demo takes them with the training loop's label roles)
        parser.add_argument("--ai-source", default="",
                            help="the label_<source> of the AI judge: pairs without it go to humans")
        _judge_arg(parser)
    parser.add_argument("--require-skill", action="store_true",
                        help="refuse to route with a PPM whose skill interval includes 0")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument("--out", default="", help="also write the result to this JSON file")
    parser.add_argument("--page-size", type=int, default=0,
                        help="assignments per page fetched from the router (default 10,000; at most 100,000)")


def _mixes_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mixes", type=int, default=400,
                        help="candidate mixes scored for the PPM (default %(default)s)")
    parser.add_argument("--ppm-kind", default="linear", choices=KINDS)
    parser.add_argument("--target", default="label_accuracy", choices=TARGETS,
                        help="what scores a mix: its labels' accuracy against the reference, or "
                             "a proxy reward model's accuracy on a held-out split (the paper's)")


def _paid_source_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paid-source", action="append", default=[], metavar="SOURCE",
                        help="a further paid label source beside the human (e.g. a costlier, stronger judge): "
                             "the PPM gets columns for it and Route can spend a money budget across them "
                             "(--source human=COST --source SOURCE=COST); repeatable")


def _demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-fraction", type=float, default=0.3,
                        help="share of the data held out as the new batch to route (default %(default)s)")


def _label_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--human-source", default="human",
                        help="the label_<source> that plays the paid human (default %(default)s)")
    parser.add_argument("--ai-source", default="ai",
                        help="the label_<source> of the AI judge; without any, a judge is trained "
                             "on the human labels (default %(default)s)")
    parser.add_argument("--reference", action="append", default=[], metavar="SOURCE",
                        help="label source(s) that score the others, their strict majority when "
                             "several (default: the human source, or the other numbered "
                             "annotators when it is one of them); repeatable")
    _judge_arg(parser)


def _judge_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge", action="append", default=[], metavar="SOURCE",
                        help="another judge whose agreement with the AI label (and its _swapped "
                             "twin's) is the judge's confidence; repeatable")


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
    _data_command(commands, "diagnose", "can routing pay on this data? (human, AI and reference labels)",
                  cmd_diagnose, _label_args,
                  lambda parser: parser.add_argument("--out", default="out/diagnose.png",
                                                     help="the PNG; its details go beside it as JSON"))
    _data_command(commands, "route", "call Route over gRPC and summarise the result", cmd_route,
                  _route_args)
    _data_command(commands, "curve", "predicted score against budget, as a PNG", cmd_curve,
                  lambda parser: _route_args(parser, budget_required=False), out="out/curve.png")
    judge = commands.add_parser("judge", help="the CPU AI judge").add_subparsers(
        dest="judge_command", required=True)
    _data_command(judge, "train", "train the judge on a file's human labels", cmd_judge_train)
    jobs = commands.add_parser("jobs", help="rm-trainer Jobs").add_subparsers(
        dest="jobs_command", required=True)
    for name, run, help_text in (("render", cmd_jobs_render, "write Job manifests for kubectl"),
                                 ("submit", cmd_jobs_submit, "run specs locally or as Kubernetes Jobs")):
        job_parser = jobs.add_parser(name, help=help_text)
        job_parser.add_argument("specs", nargs="+", help="run spec files (JSON)")
        job_parser.add_argument("--accelerator", choices=("cpu", "gpu", "tpu"),
                                help="node pool and image (the accelerator's, unless --image)")
        job_parser.add_argument("--image")
        job_parser.add_argument("--tpu-topology", help="the TPU slice's topology, e.g. 4x4")
        job_parser.add_argument("--tpu-hosts", type=int, help="TPU VMs in the slice (distributed specs: >= 2)")
        job_parser.add_argument("--tpu-chips", type=int, help="TPU chips per host")
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
    _data_command(commands, "train", "run the PPM training loop on data with human (and AI) labels",
                  cmd_train, _mixes_arg, _label_args, _paid_source_arg,
                  lambda parser: parser.add_argument("--json", action="store_true",
                                                     help="print the result as JSON"))
    report = commands.add_parser("report", help="a route explained as one offline HTML page")
    report.add_argument("route_id")
    report.add_argument("--out", default="out/report.html")
    report.add_argument("--sample", type=int, default=10, help="routed pairs shown from each group")
    report.set_defaults(run=cmd_report)
    labelling.add_commands(commands, _data_command)
    ppm.add_commands(commands)
    tagging.add_commands(commands, _data_command)
    _data_command(commands, "rounds", "route new data in rounds, refitting the PPM on each round's human "
                  "labels, against routing it at once", rounds.cmd_rounds, _mixes_arg, _label_args,
                  rounds.add_arguments)
    _data_command(commands, "demo", "up, diagnose, train on a history, route a new batch, check it, down",
                  cmd_demo, lambda parser: _route_args(parser, labels=False), _mixes_arg, _label_args,
                  _demo_args, out="out/demo/routing.json", paid_source=[])
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
