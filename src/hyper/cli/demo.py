"""`hyper demo`: up; diagnose the data; train a PPM on its history; route a new batch under the
budget; check the route against random and uncertainty on the batch's known labels; the
predicted label accuracy against budget; down."""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from hyper.api.clients import RouterClient
from hyper.api.messages import RouteResult
from hyper.cli.common import (
    add_data_arguments,
    add_label_arguments,
    add_mixes_arguments,
    add_route_arguments,
    label_roles,
    read_data,
)
from hyper.cli.routing import diagnose_request, route_request, route_whole, run_curve, run_diagnose, run_route
from hyper.cli.services import up
from hyper.cli.training import loop_config, train
from hyper.core.atomic_files import write_json_atomic
from hyper.core.schema import Dataset
from hyper.core.settings import Settings
from hyper.data.label_sources import sources_in
from hyper.infra.local_processes import LocalProcesses
from hyper.workflows.demo import RANDOM_SEEDS, check_batch, split_history_batch

BENCHMARK = Path("out/bench/quality.json")


def print_benchmark_figure(path: Path, dataset: str = "pandalm", budget: float = 0.25) -> None:
    """The same comparison from `make bench-quality`, cross-fitted on every pair, when it ran."""
    if not path.is_file():
        print("benchmark        `make bench-quality` measures the same cross-fitted on every pair of "
              "three datasets, with intervals")
        return
    report = json.loads(path.read_text())["datasets"].get(dataset)
    rows = {r["strategy"]: r["label_accuracy"] for r in (report or {}).get("results", []) if r["budget"] == budget}
    for strategy in ("auto", "uncertainty") if rows else ():
        row = rows[strategy]
        print(f"benchmark        {dataset} at {budget:.0%}, 5-fold cross-fitted ({path}): {strategy} - random "
              f"{row['diff_vs_random']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")
    if "auto" in rows and "diff_vs_uncertainty" in rows["auto"]:
        low, high = rows["auto"]["vs_uncertainty_ci"]
        versus = rows["auto"]["diff_vs_uncertainty"]
        print(f"benchmark        auto - uncertainty {versus:+.4f} [{low:+.4f}, {high:+.4f}]")


def split(dataset: Dataset, args: argparse.Namespace, directory: Path) -> tuple[Path, Path]:
    history, batch = split_history_batch(dataset, args.batch_fraction, args.seed, directory)
    n_batch = int(round(args.batch_fraction * len(dataset)))
    print(f"\n== split {len(dataset)} pairs: {len(dataset) - n_batch} history to learn from, {n_batch} "
          "new batch to route")
    return history, batch


def check_route(args: argparse.Namespace, router: RouterClient, batch: Path, route: RouteResult) -> dict:
    """What a team cannot measure but the demo can: the batch's reference labels are known."""
    def routes_of(strategy: str, seed: int) -> list[str]:
        request = route_request(args, data=str(batch), strategy=strategy, seed=seed)
        return [a.route for a in route_whole(router, request).assignments]

    data = read_data(args, str(batch))
    # The judge's confidence from the labels: its swapped order, other judges.
    sources = sources_in(data.instances)
    confident = bool(args.judge) or f"{args.ai_source}_swapped" in sources
    uncertainty = routes_of("uncertainty", args.seed) if confident else None
    randoms = [routes_of("random", k) for k in range(RANDOM_SEEDS)]
    check = check_batch(data, label_roles(args), [a.route for a in route.assignments], uncertainty, randoms)
    print(f"\n== checked on the batch's reference labels ({check.n_scored} scored pairs, unseen by the models)")
    predicted = ("nothing was predicted" if route.predicted_score is None else
                 f"predicted {route.predicted_score:.4f} [{route.predicted_lower:.4f}, {route.predicted_upper:.4f}]")
    print(f"label accuracy   {route.strategy_chosen:<12s} {check.routed:.4f}   ({predicted})")
    if check.uncertainty is not None:
        print(f"                 uncertainty  {check.uncertainty:.4f}")
    print(f"                 random       {check.random.mean:.4f}   (mean of {RANDOM_SEEDS} seeds)")
    diff = check.routed_minus_random
    print(f"routed - random  {diff.mean:+.4f}  95% interval [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}] "
          "(paired bootstrap over the batch's pairs and random's seeds)")
    print_benchmark_figure(BENCHMARK)
    return {"n_scored": check.n_scored, "routed": check.routed, "uncertainty": check.uncertainty,
            "random": check.random.to_json(), "routed_minus_random": diff.to_json()}


def with_user_roots(settings: Settings, *paths: Path) -> Settings:
    """The settings of the processes the demo starts for its user: they may read the files the
    user named (a shared server keeps its own data roots)."""
    roots = [settings.data_roots, *(str(p.resolve()) for p in paths)]
    return settings.model_copy(update={"data_roots": os.pathsep.join(dict.fromkeys(roots))})


def demo(args: argparse.Namespace, settings: Settings) -> None:
    start, out = time.monotonic(), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print("== starting tagger, ppm and router", flush=True)
    up(with_user_roots(settings, Path(args.data).parent, out.parent))
    router = RouterClient.connect(settings)
    dataset = read_data(args)
    judged = args.ai_source in sources_in(dataset.instances)
    history, batch = split(dataset, args, out.parent)
    print("\n== can routing pay here? (hyper diagnose of the history: what a team knows before routing)",
          flush=True)
    verdict = "not diagnosed: the data has no AI labels (the training loop cross-fits a judge)"
    if judged:
        verdict = run_diagnose(router, diagnose_request(args, str(history)), out.with_name("diagnose.png"),
                               history.name).verdict
    else:
        print(verdict)
    print(f"\n== training a PPM on the history ({history.name}: pairs with human and AI labels)", flush=True)
    training = train(read_data(args, str(history)), loop_config(args), settings)
    print(f"\n== routing the new batch ({batch.name}) at budget {args.budget}", flush=True)
    # Without AI labels there is nothing to force to humans or to score the batch with.
    route_args = argparse.Namespace(**{**vars(args), "ai_source": args.ai_source if judged else ""})
    route = run_route(router, route_request(route_args, data=str(batch)))
    check = (check_route(route_args, router, batch, route) if judged else
             "not checked: without AI labels the batch's hybrid labels cannot be scored")
    if not judged:
        print(check)
    # (a batch's route is one page: every assignment)
    write_json_atomic(out, route.model_dump(mode="json") | {"training": asdict(training),
                                                           "diagnosis_verdict": verdict, "batch_check": check})
    print("\n== predicted label accuracy of the batch against budget", flush=True)
    curve = out.with_name("budget_curve.png")
    run_curve(router, route_request(route_args, data=str(batch), budget_curve=True), curve, batch.name)
    print(f"\n== wrote {out}, {curve} and {out.with_name('diagnose.png')} in {time.monotonic() - start:.0f} s")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    try:
        demo(args, settings)
    finally:
        LocalProcesses(settings).down()


def demo_parser(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_route_arguments(parser, labels=False)
    add_mixes_arguments(parser)
    add_label_arguments(parser)
    parser.add_argument("--batch-fraction", type=float, default=0.3,
                        help="share of the data held out as the new batch to route (default %(default)s)")
    parser.set_defaults(run=cmd_demo, out="out/demo/routing.json", paid_source=[], strategy="auto")


PARSERS = {"demo": demo_parser}
