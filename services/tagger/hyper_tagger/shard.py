"""One worker of a tagging run: shards of a dataset tagged into the shared feature cache.

    hyper-tag-shard --dataset PATH --shards N --run-dir DIR [--index I]

The file is read as Route reads it (same format, columns and bad-row policy, so the same
content keys); shard i holds rows i, i+N, i+2N, ... Each batch of a shard goes through
`Tagger.cached_values`, which computes the cache misses only and commits them to the feature
cache (Redis when HYPER_REDIS_URL is set, else the disk cache under HYPER_HOME): a shard run
twice costs its second time a cache read, so a retried pod redoes at most one batch.

Which shards: `--index`, else JOB_COMPLETION_INDEX (set by an Indexed Job, Kubernetes >= 1.21),
one shard each; else (an API server that predates Indexed Jobs, or the local backend) the
worker pulls shards from the run directory until every shard is done (hyper.infra.shard_queue), and
exits 0 only then, so that a Job counting successes completes only when all shards are tagged.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time

from hyper.core import logs
from hyper.core.errors import HyperError, InvalidArgument
from hyper.core.schema import Instance
from hyper.core.settings import Settings
from hyper.data import dataset_files
from hyper.data.dataset_files import parse_columns
from hyper.infra.shard_queue import ShardQueue, shard_rows
from hyper_tagger.server import build_tagger
from hyper_tagger.tagging import Tagger

log = logging.getLogger("hyper_tagger.shard")
INDEX_VARIABLE = "JOB_COMPLETION_INDEX"


class ShardNotCached(HyperError):
    pass


def tag_shard(tagger: Tagger, instances: list[Instance], batch_size: int) -> dict:
    """Tags the shard batch by batch into the cache, then reads it back: a cache that dropped
    the commit (Redis unreachable is logged and bypassed by the cache) fails the shard."""
    start, misses = time.monotonic(), 0
    for first in range(0, len(instances), batch_size):
        _, batch_misses = tagger.cached_values(instances[first:first + batch_size])
        misses += batch_misses
    _, missing = tagger.cache.get_many([i.content_key() for i in instances])
    if missing:
        raise ShardNotCached(f"the feature cache did not keep {len(missing)} of the shard's "
                             f"{len(instances)} values (is Redis reachable? see the log above)")
    return {"rows": len(instances), "misses": misses, "seconds": round(time.monotonic() - start, 3),
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def index_from_environment(n_shards: int) -> int | None:
    """The Indexed Job's index; None where the variable is absent or empty (the downward API
    gives "" for an annotation the pod lacks: an API server without Indexed Jobs)."""
    text = os.environ.get(INDEX_VARIABLE, "")
    if not text:
        return None
    if not text.isdigit() or int(text) >= n_shards:
        raise InvalidArgument(INDEX_VARIABLE, f"{text!r} is not a shard index below {n_shards}")
    return int(text)


class ShardWorker:
    """Reads the dataset and builds the tagger once, on the first shard it gets."""

    def __init__(self, args, settings: Settings):
        self.args = args
        self.settings = settings
        self._instances: list[Instance] | None = None
        self._tagger: Tagger | None = None

    def _load(self) -> tuple[list[Instance], Tagger]:
        if self._instances is None or self._tagger is None:
            dataset = dataset_files.read_dataset(self.args.dataset, self.args.format,
                                                 parse_columns(self.args.column), self.args.skip_bad_rows)
            self._instances = dataset.instances
            self._tagger = build_tagger(self.settings)
        return self._instances, self._tagger

    def run(self, index: int, queue: ShardQueue) -> None:
        instances, tagger = self._load()
        shard = [instances[row] for row in shard_rows(len(instances), self.args.shards, index)]
        record = {"shard": index, **tag_shard(tagger, shard, self.args.batch_size)}
        queue.mark_done(index, record)
        log.info("shard tagged", extra=record)


def pull_shards(worker: ShardWorker, queue: ShardQueue, poll_seconds: float) -> None:
    """Claims shards until every one is done; waits while others hold live claims (one may
    go stale: its pod died, and this worker takes the shard over)."""
    while True:
        claim = queue.claim()
        if claim is not None:
            with claim:
                worker.run(claim.index, queue)
        elif queue.all_done():
            return
        else:
            time.sleep(poll_seconds)


def check_arguments(args) -> None:
    if args.shards < 1:
        raise InvalidArgument("--shards", f"{args.shards} is not a positive count")
    if args.index is not None and not 0 <= args.index < args.shards:
        raise InvalidArgument("--index", f"{args.index} is not a shard index below {args.shards}")
    if args.batch_size < 1:
        raise InvalidArgument("--batch-size", f"{args.batch_size} is not a positive count")


def run(args, settings: Settings) -> None:
    check_arguments(args)
    if args.require_redis and not settings.redis_url:
        raise InvalidArgument("HYPER_REDIS_URL", "is empty, and this run's tagger reads its features from "
                                                 "Redis only (the chart's redis.enabled or redis.externalUrl)")
    queue = ShardQueue(args.run_dir, args.shards, args.lease_seconds)
    worker = ShardWorker(args, settings)
    index = args.index if args.index is not None else index_from_environment(args.shards)
    if index is not None:
        worker.run(index, queue)
    else:
        pull_shards(worker, queue, args.poll_seconds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hyper-tag-shard", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="JSONL, JSONL.gz or Parquet file")
    parser.add_argument("--format", default="auto")
    parser.add_argument("--column", action="append", default=[], metavar="FIELD=COLUMN")
    parser.add_argument("--skip-bad-rows", action="store_true")
    parser.add_argument("--shards", type=int, required=True, help="how many shards the dataset is cut into")
    parser.add_argument("--index", type=int, help=f"tag this shard only (default: ${INDEX_VARIABLE}, "
                                                  "else claim shards from --run-dir)")
    parser.add_argument("--run-dir", required=True, help="the run's directory on the shared volume")
    parser.add_argument("--batch-size", type=int, default=256, help="instances per cache commit")
    parser.add_argument("--lease-seconds", type=float, default=60.0,
                        help="a claim untouched this long is taken over (its worker died)")
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    parser.add_argument("--require-redis", action="store_true",
                        help="refuse to run without HYPER_REDIS_URL (the cluster's tagger reads only Redis)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    logs.configure("tagger-shard", settings.log_level)
    try:
        run(args, settings)
    except HyperError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
