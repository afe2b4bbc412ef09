"""The tagging Job's manifest, and the shard queue its pods fall back on where the cluster has
no Indexed Jobs (real files, real processes racing for claims)."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import kubernetes_validate
import pytest

from hyper.core.errors import InvalidArgument
from hyper.infra.shard_queue import ShardQueue, shard_rows
from hyper.infra.tagging_jobs import TagJobSettings, TagRun, render_tag_job
from hyper_tagger.shard import INDEX_VARIABLE, index_from_environment

RUN = TagRun(name="tag-hh-0a1b2c", dataset="/var/lib/hyper/data/hh.jsonl.gz", shards=8, parallelism=3,
             format="hh-rlhf", columns=("prompt=question",))


def test_the_job_is_indexed_with_a_completion_per_shard_and_runs_the_shard_worker():
    manifest = render_tag_job(RUN, TagJobSettings(namespace="labelling", release="prod", lease_seconds=30))
    kubernetes_validate.validate(manifest, "1.30", strict=True)
    spec = manifest["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 8, 3)
    assert manifest["metadata"]["name"] == "tag-hh-0a1b2c" and manifest["metadata"]["namespace"] == "labelling"
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["hyper-tag-shard"]
    assert container["args"] == ["--dataset", "/var/lib/hyper/data/hh.jsonl.gz", "--shards", "8",
                                 "--run-dir", "/var/lib/hyper/tag-runs/tag-hh-0a1b2c", "--format", "hh-rlhf",
                                 "--column", "prompt=question", "--lease-seconds", "30", "--require-redis"]
    env = {variable["name"]: variable for variable in container["env"]}
    assert env[INDEX_VARIABLE]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    assert env["HYPER_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "prod-secrets", "key": "redis-url"}
    assert container["envFrom"][0]["configMapRef"]["name"] == "prod-config"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "prod-state"
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}  # base
    small = render_tag_job(RUN, TagJobSettings(cpu="500m", memory="1536Mi"))  # a small node's workers
    assert small["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1536Mi"}, "limits": {"memory": "3072Mi"}}


def test_parallelism_is_capped_by_the_shards_and_the_state_claim_can_be_an_existing_one():
    run = TagRun(name="tag-x", dataset="/d.jsonl", shards=2, parallelism=10)
    manifest = render_tag_job(run, TagJobSettings(state_claim="shared-nfs"))
    assert manifest["spec"]["parallelism"] == 2
    assert manifest["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "shared-nfs"


@pytest.mark.parametrize(("shards", "parallelism", "field"), [(0, 1, "--shards"), (4, 0, "--parallelism")])
def test_counts_that_cannot_run_are_refused_by_name(shards, parallelism, field):
    with pytest.raises(InvalidArgument, match=field):
        render_tag_job(TagRun(name="tag-x", dataset="/d.jsonl", shards=shards, parallelism=parallelism),
                       TagJobSettings())


def test_the_shards_cut_the_rows_into_disjoint_strided_pieces():
    pieces = [list(shard_rows(10, 3, index)) for index in range(3)]
    assert pieces == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert list(shard_rows(2, 4, 3)) == []  # more shards than rows: some are empty, and done at once


@pytest.mark.parametrize(("value", "index"), [("", None), ("0", 0), ("7", 7)])
def test_the_index_comes_from_the_indexed_job_or_is_absent(monkeypatch, value, index):
    monkeypatch.setenv(INDEX_VARIABLE, value)  # "" is what the downward API gives on a 1.20 server
    assert index_from_environment(8) == index


@pytest.mark.parametrize("value", ["8", "-1", "x"])
def test_an_index_outside_the_shards_is_refused(monkeypatch, value):
    monkeypatch.setenv(INDEX_VARIABLE, value)
    with pytest.raises(InvalidArgument, match=INDEX_VARIABLE):
        index_from_environment(8)


def test_a_claimed_shard_is_not_claimed_again_until_its_lease_goes_stale(tmp_path):
    first, second = ShardQueue(tmp_path, 2, lease_seconds=60), ShardQueue(tmp_path, 2, lease_seconds=60)
    claims = [first.claim(), second.claim()]
    assert [c.index for c in claims] == [0, 1] and second.claim() is None
    stale = os.stat(claims[0].path).st_mtime - 120
    os.utime(claims[0].path, (stale, stale))  # its pod was killed: nobody touches the claim
    takeover = second.claim()
    assert (takeover.index, takeover.path.name) == (0, "shard-00000.claim-1")
    assert first.claim() is None  # the new generation is live


def test_a_failed_shard_is_released_and_a_done_one_is_skipped(tmp_path):
    queue = ShardQueue(tmp_path, 2)
    with pytest.raises(RuntimeError), queue.claim() as claim:
        raise RuntimeError("the shard failed")
    assert not claim.path.exists() and queue.claim().index == 0
    queue.mark_done(1, {"shard": 1, "rows": 3})
    assert queue.claim() is None and not queue.all_done()
    queue.mark_done(0, {"shard": 0, "rows": 4})
    assert queue.all_done() and [r["rows"] for r in queue.records()] == [4, 3]


def claim_until_empty(run_dir: str, out: str) -> None:
    queue, claimed = ShardQueue(Path(run_dir), 40), []
    while (claim := queue.claim()) is not None:
        claimed.append(claim.index)
    Path(out).write_text(json.dumps(claimed))


def test_workers_racing_for_claims_each_shard_is_won_exactly_once(tmp_path):
    context = multiprocessing.get_context("fork")  # (spawn would re-import this module: torch and all)
    outs = [tmp_path / f"worker{k}.json" for k in range(4)]
    workers = [context.Process(target=claim_until_empty, args=(str(tmp_path / "run"), str(out))) for out in outs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    won = [index for out in outs for index in json.loads(out.read_text())]
    assert sorted(won) == list(range(40))
