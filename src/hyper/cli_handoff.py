"""`hyper tasks export|import` and `hyper export`: from a route to the annotation tool, the
tool's labels back, and the final hybrid dataset that reward-model and DPO trainers read."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hyper import dataset_files
from hyper.annotation_tasks import TOOLS, check_against_route, export_tasks, labelled_records, parse_export, report
from hyper.atomic import atomic_open
from hyper.config import Settings
from hyper.errors import InvalidArgument
from hyper.hybrid_dataset import FORMATS, TIE_POLICIES, hybrid_pairs, preference_rows, single_source_pairs, write_rows
from hyper.route_api import RouteResult
from hyper.routed import ROUTE_ID, RoutedDataset, dataset_of, load_route_file, routed_dataset


def fetch_route(route: str, settings: Settings) -> RouteResult:
    """A route id (fetched from the router, which persists every result) or a route file."""
    if ROUTE_ID.fullmatch(route):
        from hyper import serving, wire
        from hyper.clients import RouterClient

        client = RouterClient(serving.channel(settings.address("router"), settings))
        return wire.route_result_from_proto(client.get_route(route))
    path = Path(route)
    if not path.is_file():
        raise InvalidArgument("route", f"{route!r} is neither a route id (32 hex digits) nor a route file")
    return load_route_file(path)


def load_routed(args, settings: Settings) -> RoutedDataset:
    result = fetch_route(args.route, settings)
    routed = routed_dataset(result, dataset_of(result, args.data))
    if args.ai_source:
        routed = RoutedDataset(routed.route_id, args.ai_source, routed.instances, routed.routes)
    return routed


def cmd_tasks_export(args, settings: Settings) -> None:
    routed = load_routed(args, settings)
    files = export_tasks(routed, args.format, Path(args.out))
    judged = sum(routed.ai_source in i.labels for i in routed.paid())
    print(f"tasks          {len(routed.paid())} human-routed pairs of {len(routed.instances)} "
          f"(route {routed.route_id}); the judge's verdict suggested on {judged}")
    for path in files:
        print(f"wrote          {path}")


def cmd_tasks_import(args, settings: Settings) -> None:
    routed = load_routed(args, settings)
    merged = check_against_route(parse_export(Path(args.file), args.format), routed)
    with atomic_open(args.out) as out:
        for record in labelled_records(merged, routed, args.human_source):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    for line in report(merged, routed).lines():
        print(line)
    print(f"wrote          {args.out} (label_{args.human_source}: each item's majority; annotations: all)")


def human_labels(path: str, source: str) -> dict[str, str]:
    """The labels an import wrote (plain format), by id."""
    labelled = dataset_files.read_dataset(path, "plain")
    return {i.id: i.labels[source] for i in labelled.instances if source in i.labels}


def cmd_export(args, settings: Settings) -> None:
    if args.route:
        result = fetch_route(args.route, settings)
        routed = routed_dataset(result, dataset_files.read_dataset(args.data, args.data_format))
        if args.ai_source:
            routed = RoutedDataset(routed.route_id, args.ai_source, routed.instances, routed.routes)
        if not args.labels and routed.paid():
            raise InvalidArgument("--labels", "the route sends pairs to humans: give the labels `hyper tasks "
                                              "import` wrote")
        labels = human_labels(args.labels, args.human_source) if args.labels else {}
        costs = {a.id: a.cost for a in result.assignments}
        pairs = hybrid_pairs(routed, labels, costs, args.allow_pending)
    else:
        pairs = single_source_pairs(dataset_files.read_dataset(args.data, args.data_format).instances,
                                    args.label_source)
    rows, counts = preference_rows(pairs, args.ties, args.format, args.conversational)
    write_rows(rows, Path(args.out), args.format)
    for line in counts.lines():
        print(line)
    print(f"wrote          {args.out} ({args.format}{', conversational' if args.conversational else ''})")


def _route_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("route", help="a route id (the router keeps every result) or the file "
                                      "`hyper route --out` wrote")
    parser.add_argument("--data", default="", help="the routed file (default: the one the route read)")
    parser.add_argument("--ai-source", default="", help="the judge's label_<source> (default: the route's)")


def add_commands(commands) -> None:
    tasks = commands.add_parser("tasks", help="hand human-routed pairs to an annotation tool and take "
                                              "the labels back").add_subparsers(dest="tasks_command", required=True)
    export = tasks.add_parser("export", help="write the human-routed pairs as tasks for an annotation tool")
    _route_arguments(export)
    export.add_argument("--format", choices=TOOLS, default="label-studio")
    export.add_argument("--out", default="out/tasks", help="directory to write (default %(default)s)")
    export.set_defaults(run=cmd_tasks_export)
    imported = tasks.add_parser("import", help="merge an annotation tool's export into human labels")
    imported.add_argument("file", help="Label Studio JSON export, Argilla records (JSON) or CSV")
    _route_arguments(imported)
    imported.add_argument("--format", choices=("auto", *TOOLS), default="auto")
    imported.add_argument("--human-source", default="human", help="label_<source> to write (default %(default)s)")
    imported.add_argument("--out", required=True, help="the labelled items, plain-format JSONL")
    imported.set_defaults(run=cmd_tasks_import)
    final = commands.add_parser("export", help="the final hybrid dataset for reward-model / DPO trainers")
    final.add_argument("data", help="the labelled dataset (the routed file, with the judge's labels)")
    final.add_argument("--data-format", default="auto")
    final.add_argument("--route", default="", help="route id or file: pairs take the label of their route")
    final.add_argument("--labels", default="", help="the human labels `hyper tasks import` wrote")
    final.add_argument("--human-source", default="human", help="their label_<source> (default %(default)s)")
    final.add_argument("--ai-source", default="", help="the judge's label_<source> (default: the route's)")
    final.add_argument("--label-source", default="human",
                       help="without --route: the one label_<source> to export (default %(default)s)")
    final.add_argument("--format", choices=FORMATS, default="trl")
    final.add_argument("--conversational", action="store_true", help="prompt/chosen/rejected as chat messages")
    final.add_argument("--ties", choices=TIE_POLICIES, default="drop",
                       help="a tie gives no Bradley-Terry pair (default %(default)s)")
    final.add_argument("--allow-pending", action="store_true",
                       help="leave out human-routed pairs without a label instead of refusing")
    final.add_argument("--out", required=True, help="file (trl, jsonl, parquet) or directory (hf)")
    final.set_defaults(run=cmd_export)
