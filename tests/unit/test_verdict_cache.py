"""The judge's verdicts cached by content on the tagger's real disk store: a pair is judged
once per judge version, whatever asks again."""

from __future__ import annotations

import dataclasses

import pytest

from hyper.core.schema import Instance
from hyper.judges.pairwise import Annotation, Judgement, JudgeUsage
from hyper_tagger.cache import DiskFeatureCache
from hyper_tagger.verdicts import VERDICT_WIDTH, CachedVerdicts


@dataclasses.dataclass
class CountingJudge:
    """Labels A with a confidence from the prompt's length, at 0.01 a pair; "" for "garbled"."""

    current: str = "v1"
    judged: int = 0
    name: str = "counting"

    def version(self) -> str:
        return self.current

    def annotate(self, instances: list[Instance]) -> Annotation:
        self.judged += len(instances)
        return Annotation([Judgement("" if i.prompt == "garbled" else "A", 0.5 + len(i.prompt) / 100, 1.0)
                           for i in instances], JudgeUsage(requests=2 * len(instances), cost=0.01 * len(instances)))


def pair(prompt: str, pair_id: str = "") -> Instance:
    return Instance(pair_id or prompt, prompt, "yes", "no")


@pytest.fixture
def cached(tmp_path):
    judge = CountingJudge()
    return judge, CachedVerdicts(judge, lambda namespace: DiskFeatureCache(tmp_path / namespace, VERDICT_WIDTH))


def test_a_pair_judged_once_is_answered_from_the_cache_the_same_and_free(cached):
    judge, verdicts = cached
    first = verdicts.annotate([pair("a"), pair("bb")])
    assert judge.judged == 2 and first.usage.cost == pytest.approx(0.02)
    again = verdicts.annotate([pair("bb", "other-id"), pair("a"), pair("ccc")])
    assert judge.judged == 3 and again.usage.cost == pytest.approx(0.01)  # only the new pair was paid for
    assert again.judgements[:2] == [first.judgements[1], first.judgements[0]]  # by content, not id


def test_a_changed_judge_starts_afresh_and_a_reply_that_did_not_parse_is_asked_again(cached):
    judge, verdicts = cached
    verdicts.annotate([pair("a"), pair("garbled")])
    assert verdicts.annotate([pair("a"), pair("garbled")]).judgements[1].label == ""
    assert judge.judged == 3  # "garbled" again, "a" from the cache
    judge.current = "v2"
    verdicts.annotate([pair("a")])
    assert judge.judged == 4


def test_a_pair_repeated_in_one_call_is_judged_once(cached):
    judge, verdicts = cached
    answer = verdicts.annotate([pair("a", "x"), pair("a", "y"), pair("a", "z")])
    assert judge.judged == 1 and len({(j.label, j.confidence) for j in answer.judgements}) == 1
