"""`hyper route | curve | report | diagnose`: Route, its budget curve, a route explained, and
whether routing can pay on a dataset, over the router's gRPC API."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from itertools import chain
from pathlib import Path

from hyper.api import proto_convert
from hyper.api.clients import RouterClient
from hyper.api.messages import Assignment, DiagnoseRequest, Diagnosis, RouteRequest, RouteResult, validated
from hyper.cli.common import (
    add_data_arguments,
    add_label_arguments,
    add_route_arguments,
    error_skill_text,
    print_warnings,
    skill_text,
)
from hyper.core.atomic_files import atomic_open, write_json_atomic, write_text_atomic
from hyper.core.errors import HyperError, InvalidArgument
from hyper.core.settings import Settings
from hyper.data.dataset_files import parse_columns
from hyper.reports.plots import plot_budget_curve, plot_expected_accuracy
from hyper.reports.route_report import best_budget_verdict


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


def dataset_body(args: argparse.Namespace, path: str) -> dict:
    return {"ref": {"path": str(Path(path).resolve()), "format": args.format,
                    "columns": parse_columns(args.column), "skip_bad_rows": args.skip_bad_rows}}


def route_request(args: argparse.Namespace, *, data: str = "", strategy: str = "", seed: int | None = None,
                  budget_curve: bool = False) -> RouteRequest:
    """The typed request the flags describe (with the data, strategy or seed given instead);
    its checks name the field, as over gRPC."""
    request = {"dataset": dataset_body(args, data or args.data), "strategy": strategy or args.strategy,
               "seed": args.seed if seed is None else seed,
               "n_candidates": args.candidates, "ppm_model": args.ppm_model, "ppm_version": args.ppm_version,
               "epsilon": args.epsilon, "interval_level": args.interval, "budget_curve": budget_curve,
               "curve_points": args.points, "ai_source": args.ai_source, "judges": args.judge,
               "require_skill": args.require_skill, "page_size": args.page_size, "risk": args.risk,
               "error_model": args.error_model, "exploration_fraction": args.exploration,
               "allow_judge_calls": args.allow_judge_calls}
    if args.target_accuracy is None:
        request["budget"] = parse_budget(args.budget)
    else:
        request["target_accuracy"] = args.target_accuracy
    if args.source:
        request["sources"] = parse_sources(args.source)
    if args.human_cost_base or args.human_cost_per_1k_tokens:
        request["human_cost_model"] = {"base": args.human_cost_base,
                                       "per_1k_tokens": args.human_cost_per_1k_tokens}
    return validated(RouteRequest, request)


def route_whole(router: RouterClient, request: RouteRequest) -> RouteResult:
    """The route with every assignment (for a route small enough to hold)."""
    response = router.route(proto_convert.route_request_to_proto(request))
    return proto_convert.route_result_from_proto(router.with_all_assignments(response))


class LargestGains:
    """The five assignments with the largest gains among those seen (each passed through)."""

    def __init__(self, n: int = 5):
        self.n = n
        self.top: list[Assignment] = []

    def add(self, assignment: Assignment) -> Assignment:
        if len(self.top) < self.n or assignment.gain > self.top[-1].gain:
            self.top = sorted([*self.top, assignment], key=lambda a: -a.gain)[: self.n]
        return assignment


def write_route_file(path: Path, route: RouteResult, assignments: Iterable[Assignment]) -> None:
    """The route as its RouteResult JSON, every assignment written row by row at the end (the
    file `hyper export` and `hyper tasks` read); atomically, so a failed listing leaves no half file."""
    summary = route.model_dump(mode="json", exclude={"assignments", "next_page_token"})
    with atomic_open(path, "w") as out:
        out.write(json.dumps(summary, indent=1)[:-2] + ',\n "assignments": [')
        for k, assignment in enumerate(assignments):
            out.write((",\n  " if k else "\n  ") + assignment.model_dump_json())
        out.write("\n ]\n}\n")


def estimate_text(estimate) -> str:
    return f"{estimate.mean:+.3f} [{estimate.ci_low:+.3f}, {estimate.ci_high:+.3f}]"


def print_route(route: RouteResult, largest: list[Assignment]) -> None:
    print_warnings(route.warnings)
    n = route.n_instances
    chosen = f" -> {route.strategy_chosen}" if route.strategy_chosen != route.strategy else ""
    print(f"strategy         {route.strategy}{chosen}: {route.strategy_reason}")
    if route.routing_gain is not None:
        print(f"gain vs random   {estimate_text(route.routing_gain)} label accuracy at this budget (cross-fitted "
              "on the error model's history)")
    if route.guarantee is not None:
        print_guarantee(route)
    print(f"instances        {n}" + (f" ({route.n_skipped_rows} bad rows skipped)" if route.n_skipped_rows else ""))
    for source, count in sorted(route.n_by_source.items()):
        print(f"routed to {source:<6s} {count} ({count / max(n, 1):.1%})")
    if route.n_forced_human:
        print(f"                 ({route.n_forced_human} of them have no AI label: humans only)")
    if route.predicted_score is None:
        print("predicted        nothing: no model has learnt this judge's errors yet (`hyper train`)")
    else:
        print(f"predicted        {route.ppm_target} {route.predicted_score:.4f}  "
              f"[{route.predicted_lower:.4f}, {route.predicted_upper:.4f}] at {route.interval_level:.0%}")
    if route.error_model_skill is not None:
        print(f"error model      {route.error_model}/{route.error_model_version}: "
              f"{error_skill_text(route.error_model_skill)}")
    if route.ppm_skill is not None:
        print(f"PPM              {route.ppm_version}: {skill_text(route.ppm_skill)}")
    print(f"cost             {route.total_cost:g}")
    print("largest gains    " + ", ".join(f"{a.id} ({a.gain:+.2g})" for a in largest))


def print_guarantee(route: RouteResult) -> None:
    guarantee = route.guarantee
    assert guarantee is not None
    if guarantee.reachable:
        print(f"guarantee        label accuracy >= {guarantee.target:.3f} with probability >= {1 - guarantee.risk:.0%} "
              f"needs {route.required_budget_fraction:.1%} of the pairs to humans (the bound at that budget: "
              f"{guarantee.bound:.3f})")
    else:
        print(f"guarantee        no budget up to 100% reaches label accuracy {guarantee.target:.3f} with probability "
              f">= {1 - guarantee.risk:.0%}")
    print(f"                 assuming {guarantee.assumption}")


def run_route(router: RouterClient, request: RouteRequest, out: str = "", as_json: bool = False) -> RouteResult:
    """Route, then every assignment page by page: into `out` as they come (a route of a million
    pairs is never held at once). Returns the route with its first page."""
    response = router.route(proto_convert.route_request_to_proto(request))
    route = proto_convert.route_result_from_proto(response)
    later = router.assignment_pages(response.route_id, response.next_page_token, request.page_size)
    pages = chain([route.assignments], ([Assignment(id=a.id, route=a.route, gain=a.gain, cost=a.cost)
                                         for a in page] for page in later))
    largest = LargestGains()
    if out:
        write_route_file(Path(out), route, map(largest.add, chain.from_iterable(pages)))
    else:
        for assignment in chain.from_iterable(pages):  # read for the largest gains only
            largest.add(assignment)
    if as_json:
        print(route.model_dump_json(indent=1))
    else:
        print_route(route, largest.top)
        if out:
            print(f"written to       {out}")
    return route


def run_curve(router: RouterClient, request: RouteRequest, png: Path, title: str) -> RouteResult:
    """Route with the budget curve, then plot it (PNG) and save the route without its
    assignments, with the curve's verdict (JSON beside the PNG)."""
    route = route_whole(router, request).model_copy(update={"assignments": []})
    print_warnings(route.warnings)
    if not route.budget_curve:
        raise HyperError("no budget curve: no model predicts this route's score (fit one with `hyper train`)")
    points = [point.model_dump() for point in route.budget_curve]
    best = max(points, key=lambda p: p["predicted"])["budget_fraction"]
    verdict = best_budget_verdict(points, best)
    plot_budget_curve(points, best, png, f"{title}: {route.strategy}, PPM "
                      f"{route.ppm_version}", route.ppm_target, distinguishable=verdict.startswith("best"))
    write_json_atomic(str(png.with_suffix(".json")),
                      route.model_dump(mode="json") | {"best_budget_verdict": verdict})
    print(f"{'budget':>7s} {'predicted':>10s} {'interval':>21s} {'paid':>6s}")
    for p in route.budget_curve:
        print(f"{p.budget_fraction:7.0%} {p.predicted:10.4f} [{p.lower:.4f}, {p.upper:.4f}] {p.n_paid:6d}")
    print(f"{verdict}\nplot {png}, points {png.with_suffix('.json')}")
    return route


def diagnose_request(args: argparse.Namespace, data: str = "") -> DiagnoseRequest:
    return validated(DiagnoseRequest, {
        "dataset": dataset_body(args, data or args.data), "human_source": args.human_source,
        "ai_source": args.ai_source, "reference": args.reference, "judges": args.judge, "seed": args.seed})


def interval(estimate) -> str:
    return f"{estimate.mean:.3f} [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}]"


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


def run_diagnose(router: RouterClient, request: DiagnoseRequest, png: Path, title: str) -> Diagnosis:
    """Can routing pay on this data? Agreement, where the judge errs, error AUCs, and the label
    accuracy to expect against budget (a PNG beside the JSON)."""
    diagnosis = proto_convert.diagnosis_from_proto(router.diagnose(proto_convert.diagnose_request_to_proto(request)))
    plot_expected_accuracy(diagnosis, png, title)
    write_json_atomic(png.with_suffix(".json"), diagnosis.model_dump())
    print_diagnosis(diagnosis)
    print(f"plot {png}, details {png.with_suffix('.json')}")
    return diagnosis


def cmd_route(args: argparse.Namespace, settings: Settings) -> None:
    run_route(RouterClient.connect(settings), route_request(args), args.out, args.json)


def cmd_curve(args: argparse.Namespace, settings: Settings) -> None:
    run_curve(RouterClient.connect(settings), route_request(args, budget_curve=True), Path(args.out),
              Path(args.data).name)


def cmd_report(args: argparse.Namespace, settings: Settings) -> None:
    """A route explained as one offline HTML page (the router builds it; the gateway serves it too)."""
    page = RouterClient.connect(settings).report(args.route_id, args.sample)
    write_text_atomic(args.out, page)
    print(f"report of route {args.route_id} -> {args.out} ({len(page) / 1024:.0f} KiB, self-contained)")


def cmd_delete_routes(args: argparse.Namespace, settings: Settings) -> None:
    router = RouterClient.connect(settings)
    for route_id in args.route_ids:
        router.delete_route(route_id)
        print(f"deleted route {route_id}")


def cmd_diagnose(args: argparse.Namespace, settings: Settings) -> None:
    run_diagnose(RouterClient.connect(settings), diagnose_request(args), Path(args.out), Path(args.data).name)


def route_parser(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_route_arguments(parser)
    parser.set_defaults(run=cmd_route)


def curve_parser(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_route_arguments(parser, budget_required=False)
    parser.set_defaults(run=cmd_curve, out="out/curve.png")


def report_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("route_id")
    parser.add_argument("--out", default="out/report.html")
    parser.add_argument("--sample", type=int, default=10, help="routed pairs shown from each group")
    parser.set_defaults(run=cmd_report)


def diagnose_parser(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_label_arguments(parser)
    parser.add_argument("--out", default="out/diagnose.png", help="the PNG; its details go beside it as JSON")
    parser.set_defaults(run=cmd_diagnose)


def routes_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    delete = actions.add_parser("delete", help="delete saved routes and their assignments, for good")
    delete.add_argument("route_ids", nargs="+", metavar="ROUTE_ID")
    delete.set_defaults(run=cmd_delete_routes)


PARSERS = {"route": route_parser, "curve": curve_parser, "report": report_parser, "diagnose": diagnose_parser,
           "routes": routes_parser}
