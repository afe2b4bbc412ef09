"""The OpenAI-compatible judge's parsing and verdict combination, and resumable judging runs."""

from __future__ import annotations

import dataclasses

import pytest

from harness.local import HH_DATA
from hyper.core.errors import InvalidArgument
from hyper.data import dataset_files
from hyper.judges.openai_endpoint import EndpointConfig, combine, parse_verdict
from hyper.labelling.judging_journal import JudgedPair, judge_resumably, read_journal


@pytest.mark.parametrize("reply, verdict", [
    ("A", "A"), (" b.", "B"), ("Tie", "tie"), ("**A**", "A"), ("[[B]]", "B"), ("[[C]]", "tie"),
    ("Response A is better because it answers the question.", "A"), ("Output (b)", "B"),
    ('{"verdict": "B"}', "B"), ("Verdict: tie", "tie"), ("Both are equally helpful.", "tie"),
    ("Answer 2 is better", "B"),
    ("Response A is better. No wait, Response B is better.", None),  # names both
    ("I cannot decide without more context", None), ("", None),
])
def test_replies_parse_into_a_verdict_or_none(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_both_orders_combine_into_label_confidence_and_consistency():
    agree = combine(["A", "A"], [{"A": 0.9, "B": 0.1}, {"A": 0.7}])
    assert (agree.label, agree.confidence, agree.consistency) == ("A", pytest.approx(0.8), 1.0)
    biased = combine(["A", "B"], [{"A": 0.6, "tie": 0.1}, {"B": 0.8, "tie": 0.2}])  # position bias
    assert (biased.label, biased.confidence, biased.consistency) == ("tie", pytest.approx(0.15), 0.0)
    one = combine([None, "B"], [{}, {"B": 1.0}])  # one reply did not parse
    assert (one.label, one.confidence, one.consistency) == ("B", 1.0, 0.5)
    assert combine([None, None], [{}, {}]).label == ""  # no AI label at all


def test_a_prompt_file_needs_its_three_placeholders(tmp_path):
    good = tmp_path / "judge.txt"
    good.write_text("Be fair.\n---\nQ: {prompt}\nA: {response_a}\nB: {response_b}\n")
    assert EndpointConfig.read_template(str(good)) == ("Be fair.", "Q: {prompt}\nA: {response_a}\nB: {response_b}")
    bad = tmp_path / "bad.txt"
    bad.write_text("Be fair.\n---\nQ: {prompt}\n")
    with pytest.raises(ValueError, match="response_a"):
        EndpointConfig.read_template(str(bad))


class CrashingJudge:
    """Judges chunks, records every pair it is asked for, and crashes on one chunk."""

    def __init__(self, crash_on_chunk: int | None, name: str = "judge-x"):
        self.asked: list[str] = []
        self.chunks = 0
        self.crash_on_chunk = crash_on_chunk
        self.name = name

    def __call__(self, instances):
        self.chunks += 1
        if self.chunks == self.crash_on_chunk:
            raise RuntimeError("killed")
        self.asked += [i.id for i in instances]
        return self.name, [JudgedPair(i.id, "A", 0.9, 1.0) for i in instances], {"requests": 2.0 * len(instances)}


def test_a_crashed_run_resumes_and_no_finished_pair_is_judged_twice(tmp_path):
    instances = dataset_files.read_dataset(HH_DATA).instances[:50]
    journal = tmp_path / ".out.journal"
    first = CrashingJudge(crash_on_chunk=3)
    with pytest.raises(RuntimeError, match="killed"):
        judge_resumably(instances, first, journal, chunk_size=8)
    assert len(first.asked) == 16  # two chunks finished before the crash
    with open(journal, "a") as out:
        out.write('{"judge": "judge-x", "judged": [{"id": "cut mid-wr')  # a line a crash cut short
    second = CrashingJudge(crash_on_chunk=None)
    judged, totals = judge_resumably(instances, second, journal, chunk_size=8)
    assert sorted(first.asked + second.asked) == sorted(i.id for i in instances)  # each asked once
    assert set(judged) == {i.id for i in instances} and totals.n_resumed == 16
    assert totals.usage["requests"] == 100.0  # both runs' usage summed
    again, totals_again = read_journal(journal)  # the torn line was cut: nothing after it is lost
    assert set(again) == {i.id for i in instances} and totals_again.judges == {"judge-x"}
    third = CrashingJudge(crash_on_chunk=None)
    judge_resumably(instances, third, journal, chunk_size=8)
    assert third.asked == []  # a third run pays for nothing


def test_a_journal_of_another_judge_is_not_mixed_in(tmp_path):
    instances = dataset_files.read_dataset(HH_DATA).instances[:10]
    journal = tmp_path / ".out.journal"
    with pytest.raises(RuntimeError):
        judge_resumably(instances, CrashingJudge(crash_on_chunk=2, name="gpt"), journal, chunk_size=4)
    changed = [dataclasses.replace(i) for i in instances]
    with pytest.raises(InvalidArgument, match="remove the journal"):
        judge_resumably(changed, CrashingJudge(crash_on_chunk=None, name="llama"), journal, chunk_size=4)
