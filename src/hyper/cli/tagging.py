"""`hyper tag`: a large dataset's features computed ahead of Route, in shards, into the feature
cache: worker processes on this machine, or a Kubernetes Job (or its manifest, for kubectl)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from hyper.cli.common import add_data_arguments
from hyper.core.settings import Settings
from hyper.data import dataset_files
from hyper.data.dataset_files import parse_columns
from hyper.infra.shard_queue import ShardQueue
from hyper.infra.tagging_jobs import RUNS_DIR, TagJobSettings, TagRun, render_tag_job, run_local, run_name, wait_for_job
from hyper.infra.training_jobs import JobFailed, submit_kubernetes


def _tag_run(args) -> TagRun:
    """The run the flags describe; the file is read here first, so that a bad row is refused
    with its row and field before any worker starts."""
    dataset = dataset_files.read_dataset(args.data, args.format, parse_columns(args.column), args.skip_bad_rows)
    print(f"{args.data}: {len(dataset)} pairs in {args.shards} shards", file=sys.stderr)
    in_cluster = args.render or args.backend == "kubernetes"
    path = args.path_in_cluster if in_cluster and args.path_in_cluster else str(Path(args.data).resolve())
    return TagRun(name=run_name(args.data), dataset=path, shards=args.shards, parallelism=args.parallelism,
                  format=args.format, columns=tuple(args.column), skip_bad_rows=args.skip_bad_rows)


def _job_settings(args) -> TagJobSettings:
    overrides = {"image": args.image, "namespace": args.namespace}
    return TagJobSettings(**{k: v for k, v in overrides.items() if v is not None})


def cmd_tag(args, settings: Settings) -> None:
    run = _tag_run(args)
    if args.render:
        print(yaml.safe_dump(render_tag_job(run, _job_settings(args)), sort_keys=False), end="")
    elif args.backend == "kubernetes":
        tag_on_kubernetes(run, _job_settings(args), args.timeout)
    else:
        tag_locally(run, settings, _job_settings(args).lease_seconds)


def tag_on_kubernetes(run: TagRun, job_settings: TagJobSettings, timeout: float) -> None:
    [name] = submit_kubernetes([render_tag_job(run, job_settings)], job_settings.namespace)
    print(f"created job {name} in {job_settings.namespace}: {run.shards} shards of {run.dataset}, "
          f"{min(run.parallelism, run.shards)} pods at a time", flush=True)
    wait_for_job(name, job_settings.namespace, lambda progress: print(f"job {name}: {progress}", flush=True),
                 timeout)
    print(f"tagged: every shard's values are in the release's feature cache (job {name} Complete)")


def tag_locally(run: TagRun, settings: Settings, lease_seconds: float) -> None:
    home = settings.home.resolve()
    run_dir, log_dir = home / RUNS_DIR / run.name, home / "logs" / "tag"
    codes = run_local(run, run_dir, lease_seconds, log_dir)
    records = ShardQueue(run_dir, run.shards).records()
    for record in records:
        print(f"shard {record['shard']:>4d}  {record['rows']:>7d} rows  {record['misses']:>7d} computed  "
              f"{record['seconds']:8.1f} s  ({record['worker']})")
    rows, misses = sum(r["rows"] for r in records), sum(r["misses"] for r in records)
    print(f"tagged {len(records)} of {run.shards} shards: {rows} rows, {misses} computed, {rows - misses} "
          f"already cached; logs in {log_dir}")
    if any(codes) or len(records) < run.shards:
        raise JobFailed(f"{sum(1 for c in codes if c)} of {len(codes)} workers failed; logs in {log_dir}")
    if not settings.redis_url:
        print("note: a tagger started before this run (`hyper up`) read its disk cache when it started; "
              "restart it (`hyper down && hyper up`) for Route to find these values (with HYPER_REDIS_URL "
              "the cache is shared as it is written)", file=sys.stderr)


def _tag_arguments(parser) -> None:
    parser.add_argument("--backend", choices=("local", "kubernetes"), default="local",
                        help="worker processes here, or a Job in the cluster (kubeconfig or in-cluster)")
    parser.add_argument("--shards", type=int, default=4, help="pieces the dataset is cut into (default %(default)s)")
    parser.add_argument("--parallelism", type=int, default=2,
                        help="workers (pods) at a time (default %(default)s)")
    parser.add_argument("--render", action="store_true",
                        help="print the Job manifest (for `kubectl create -f -`) instead of running it")
    parser.add_argument("--path-in-cluster", default="",
                        help="where the dataset lies on the cluster's state volume (default: its path here)")
    parser.add_argument("--image", help="the tagger image (default $HYPER_TAG_JOB_IMAGE)")
    parser.add_argument("--namespace", help="the release's namespace (default $HYPER_TAG_JOB_NAMESPACE)")
    parser.add_argument("--timeout", type=float, default=24 * 3600.0,
                        help="seconds to wait for the Job (it goes on in the cluster after)")


def tag_parser(parser) -> None:
    add_data_arguments(parser)
    _tag_arguments(parser)
    parser.set_defaults(run=cmd_tag)


PARSERS = {"tag": tag_parser}
