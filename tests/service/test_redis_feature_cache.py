"""The tagger's feature cache in a real redis-server: vectors round-trip under their feature-set
version, and a second tagging of the same pairs does no model work."""

import numpy as np
import pytest

from hyper.core.settings import Settings
from hyper.method.embeddings import SentenceEmbedder
from hyper_tagger.cache import RedisFeatureCache
from hyper_tagger.descriptive import PrototypeTagger
from hyper_tagger.tagging import CACHED_WIDTH, Tagger
from hyper_tagger.textual import load_ner

pytestmark = [pytest.mark.service, pytest.mark.redis]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return SentenceEmbedder(Settings().embedding_model, tmp_path_factory.mktemp("embeddings"))


def test_redis_cache_round_trips_vectors_and_reports_missing_keys(redis_url):
    cache = RedisFeatureCache(redis_url, "test-v1", dim=3)
    cache.put_many(["a", "b"], np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    vectors, missing = cache.get_many(["b", "zzz", "a"])
    assert missing == [1]
    assert vectors[0].tolist() == [4, 5, 6] and vectors[2].tolist() == [1, 2, 3]
    other_version = RedisFeatureCache(redis_url, "test-v2", dim=3)
    assert other_version.get_many(["a"])[1] == [0]  # the feature-set version is part of the key


def test_a_second_tagging_does_no_model_work(redis_url, embedder, hh_dataset, monkeypatch):
    from hyper_tagger import tagging
    from hyper_tagger.tagging import features_version

    instances = hh_dataset.instances[:25]
    ner = load_ner(Settings().ner_model)
    descriptive = PrototypeTagger(embedder)

    def cache():
        return RedisFeatureCache(redis_url, features_version(embedder, ner, descriptive), CACHED_WIDTH)

    tagger = Tagger(embedder, ner, descriptive, cache())
    first = tagger.tag(instances)
    assert first.cache_misses == 25

    def no_model_work(*args, **kwargs):
        raise AssertionError("the model ran although every instance was cached")

    monkeypatch.setattr(tagging, "raw_textual_values", no_model_work)
    monkeypatch.setattr(descriptive, "tag", no_model_work)
    second = Tagger(embedder, ner, descriptive, cache()).tag(instances)
    assert second.cache_hits == 25 and second.cache_misses == 0
    assert (second.features.bits == first.features.bits).all()


def test_a_redis_that_refuses_the_tagger_is_bypassed_like_one_that_is_down(redis_url):
    """A reachable Redis answering an error (here its ACL denying the commands; on the node,
    protected mode) costs the cache, never the tagging."""
    import redis

    from hyper_tagger.cache import CACHE_BYPASSED

    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "default", "-mget", "-set")
    try:
        refused = RedisFeatureCache(redis_url, "test-refused", dim=3)
        before = {op: CACHE_BYPASSED.labels(op)._value.get() for op in ("get", "put")}
        vectors, missing = refused.get_many(["a", "b"])
        refused.put_many(["a"], np.ones((1, 3), dtype=np.float32))
        assert missing == [0, 1] and not vectors.any()
        assert {op: CACHE_BYPASSED.labels(op)._value.get() - n for op, n in before.items()} == {"get": 1, "put": 1}
    finally:
        admin.execute_command("ACL", "SETUSER", "default", "+@all")
