"""The data team's loop after a route: `hyper annotate` (AI labels from the tagger's judge,
resumable), `hyper tasks export|import` (the human-routed pairs to an annotation tool and its
labels back), and `hyper export` (the final hybrid dataset that reward-model and DPO trainers
read)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from hyper.api import proto_convert
from hyper.api.clients import RouterClient, TaggerClient
from hyper.api.messages import ROUTE_ID, RouteResult
from hyper.cli.common import add_data_arguments, read_data
from hyper.core.atomic_files import atomic_open
from hyper.core.errors import InvalidArgument
from hyper.core.settings import Settings
from hyper.data import dataset_files
from hyper.data.ingest import plain_record
from hyper.labelling.annotation_tasks import (
    TOOLS,
    check_against_route,
    export_tasks,
    labelled_records,
    parse_export,
    report,
)
from hyper.labelling.hybrid_dataset import (
    FORMATS,
    TIE_POLICIES,
    hybrid_pairs,
    preference_rows,
    single_source_pairs,
    write_rows,
)
from hyper.labelling.judging_journal import JudgedPair, Totals, judge_resumably
from hyper.labelling.routed_pairs import RoutedDataset, dataset_of, load_route_file, routed_dataset


def judge_chunk_over_grpc(settings: Settings):
    client = TaggerClient.connect(settings)

    def judge(instances):
        response = client.annotate_with_usage(instances)
        pairs = [JudgedPair(j.instance_id, j.label, j.confidence, j.consistency) for j in response.judgements]
        usage = {f.name: getattr(response.usage, f.name) for f in response.usage.DESCRIPTOR.fields}
        return response.judge, pairs, usage

    return judge


def print_usage(totals: Totals, n_pairs: int) -> None:
    usage = totals.usage
    rate = n_pairs / totals.seconds if totals.seconds else 0.0  # every judged pair over every judging second
    print(f"judge          {', '.join(sorted(totals.judges))}: {n_pairs} pairs ({totals.n_resumed} from an "
          f"earlier run's journal), {totals.seconds:.1f} s judging, {rate:.2f} pairs/s")
    print(f"requests       {usage.get('requests', 0):.0f} ({usage.get('retries', 0):.0f} retries); "
          f"{usage.get('unparsed', 0):.0f} replies did not parse")
    print(f"tokens         {usage.get('prompt_tokens', 0):.0f} prompt, {usage.get('completion_tokens', 0):.0f} "
          f"completion; cost {usage.get('cost', 0):.4f}")


def cmd_annotate(args, settings: Settings) -> None:
    """AI labels for a file from the tagger's judge, written as a plain-format file with
    label_<source> (absent where the judge's replies did not parse) and judge_confidence."""
    dataset = read_data(args)
    out = Path(args.out)
    journal = out.with_name(f".{out.name}.journal")

    def progress(done: int, total: int) -> None:
        print(f"judged {done}/{total} pairs", file=sys.stderr, flush=True)

    judged, totals = judge_resumably(dataset.instances, judge_chunk_over_grpc(settings), journal, args.chunk,
                                     progress)
    labelled = [dataclasses.replace(i, labels=dict(i.labels, **{args.source: judged[i.id].label}),
                                    judge_confidence=judged[i.id].confidence) if judged[i.id].label
                else i for i in dataset.instances]
    with atomic_open(out) as stream:
        for instance in labelled:
            stream.write(json.dumps(plain_record(instance), ensure_ascii=False) + "\n")
    journal.unlink()
    print_usage(totals, len(labelled))
    unlabelled = sum(not judged[i.id].label for i in dataset.instances)
    print(f"labels         label_{args.source} on {len(labelled) - unlabelled} pairs; none on {unlabelled} "
          "(no reply parsed: Route sends them to humans)")
    for source in sorted({s for i in dataset.instances for s in i.labels if s != args.source}):
        pairs = [(i.labels[source], judged[i.id].label) for i in dataset.instances
                 if source in i.labels and judged[i.id].label]
        if pairs:
            agree = sum(a == b for a, b in pairs) / len(pairs)
            print(f"agreement      with label_{source}: {agree:.1%} of {len(pairs)} pairs")
    print(f"wrote          {out}")


def fetch_route(route: str, settings: Settings) -> RouteResult:
    """A route id (fetched from the router, which persists every result) or a route file."""
    if ROUTE_ID.fullmatch(route):
        client = RouterClient.connect(settings)
        return proto_convert.route_result_from_proto(client.with_all_assignments(client.get_route(route)))
    path = Path(route)
    if not path.is_file():
        raise InvalidArgument("route", f"{route!r} is neither a route id (32 hex digits) nor a route file")
    return load_route_file(path)


def load_routed(args, settings: Settings) -> RoutedDataset:
    result = fetch_route(args.route, settings)
    return routed_dataset(result, dataset_of(result, args.data), args.ai_source)


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
        routed = routed_dataset(result, dataset_files.read_dataset(args.data, args.data_format), args.ai_source)
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


def _annotate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="plain-format JSONL to write")
    parser.add_argument("--source", default="ai", help="the label_<source> to write (default %(default)s)")
    parser.add_argument("--chunk", type=int, default=32,
                        help="pairs per Annotate call; a crash loses at most the chunk in flight")


def _route_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("route", help="a route id (the router keeps every result) or the file "
                                      "`hyper route --out` wrote")
    parser.add_argument("--data", default="", help="the routed file (default: the one the route read)")
    parser.add_argument("--ai-source", default="", help="the judge's label_<source> (default: the route's)")


def annotate_parser(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    _annotate_arguments(parser)
    parser.set_defaults(run=cmd_annotate)


def tasks_parser(parser: argparse.ArgumentParser) -> None:
    tasks = parser.add_subparsers(dest="tasks_command", required=True)
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


def export_parser(final: argparse.ArgumentParser) -> None:
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


PARSERS = {"annotate": annotate_parser, "tasks": tasks_parser, "export": export_parser}
