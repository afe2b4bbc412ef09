"""The judge's verdicts, cached by content: a pair a judge has labelled is not paid for again
(a Route's allow_judge_calls, `hyper annotate`, a retried call). Kept in the feature cache's
store (Redis, else disk) under the pair's content key and the judge's version, which changes
with anything that changes its answers (model, endpoint, prompt, settings; a saved judge's
file): a judge changed in any such way starts afresh. A reply that did not parse is not kept."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from prometheus_client import Counter

from hyper.core.schema import Instance
from hyper.judges.pairwise import Annotation, Judge, Judgement, JudgeUsage
from hyper_tagger.cache import FeatureCache

LABELS = ("", "A", "B", "tie")  # stored by position; "" (unparsed) is never stored
VERDICT_WIDTH = 3  # the label's position, the confidence, the consistency
VERDICT_LOOKUPS = Counter("hyper_tagger_verdict_lookups_total", "Judge verdicts looked up in the cache "
                                                                "(a hit is a paid call saved).", ["result"])


class CachedVerdicts:
    """A Judge that asks the judge behind it only for pairs it has not labelled before."""

    def __init__(self, judge: Judge, open_store: Callable[[str], FeatureCache]):
        self.judge = judge
        self.name = judge.name
        self.open_store = open_store
        self.stores: dict[str, FeatureCache] = {}

    def version(self) -> str:
        return self.judge.version()

    def annotate(self, instances: list[Instance]) -> Annotation:
        store = self._store(self.judge.version())
        keys = [instance.content_key() for instance in instances]
        verdicts, missing = store.get_many(keys)
        VERDICT_LOOKUPS.labels("hit").inc(len(keys) - len(missing))
        VERDICT_LOOKUPS.labels("miss").inc(len(missing))
        usage = JudgeUsage()
        if missing:
            usage = self._judge_missing(store, instances, keys, verdicts, missing)
        return Annotation([Judgement(LABELS[int(code)], float(confidence), float(consistency))
                           for code, confidence, consistency in verdicts], usage)

    def _judge_missing(self, store: FeatureCache, instances: list[Instance], keys: list[str],
                       verdicts: np.ndarray, missing: list[int]) -> JudgeUsage:
        """Fills `verdicts` where missing, judging each distinct pair once; returns the cost."""
        first_of: dict[str, int] = {}
        for position in missing:
            first_of.setdefault(keys[position], position)
        fresh = self.judge.annotate([instances[position] for position in first_of.values()])
        judged = {key: [LABELS.index(j.label), j.confidence, j.consistency]
                  for key, j in zip(first_of, fresh.judgements, strict=True)}
        for position in missing:
            verdicts[position] = judged[keys[position]]  # float32, as a later hit will read it
        parsed = [key for key, j in zip(first_of, fresh.judgements, strict=True) if j.label]
        if parsed:
            store.put_many(parsed, np.array([judged[key] for key in parsed], dtype=np.float32))
        return fresh.usage

    def _store(self, version: str) -> FeatureCache:
        if version not in self.stores:
            self.stores[version] = self.open_store(f"judge-verdicts-{version}")
        return self.stores[version]
