"""The tagger's feature cache against a real redis-server, and without one."""

import logging

import numpy as np
import pytest

from hyper.core.settings import Settings
from hyper.core.vector_store import COMPACT_AFTER_SEGMENTS, VectorStore
from hyper.method.embeddings import SentenceEmbedder
from hyper_tagger.cache import CACHE_BYPASSED, DiskFeatureCache, RedisFeatureCache
from hyper_tagger.descriptive import PrototypeTagger
from hyper_tagger.tagging import CACHED_WIDTH, Tagger
from hyper_tagger.textual import load_ner


def test_unreachable_redis_is_bypassed_with_a_metric_and_a_log_line(tmp_path, caplog):
    cache = RedisFeatureCache(f"unix://{tmp_path}/no-such.sock", "test", dim=2, timeout_seconds=0.2)
    before = CACHE_BYPASSED.labels("get")._value.get()
    with caplog.at_level(logging.WARNING):
        vectors, missing = cache.get_many(["a", "b"])
        cache.put_many(["a"], np.ones((1, 2)))  # must not raise
    assert missing == [0, 1] and vectors.shape == (2, 2)
    assert CACHE_BYPASSED.labels("get")._value.get() == before + 1
    assert "feature cache bypassed" in caplog.text


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return SentenceEmbedder(Settings().embedding_model, tmp_path_factory.mktemp("embeddings"))




def test_disk_cache_survives_a_new_process_view(tmp_path):
    DiskFeatureCache(tmp_path, 2).put_many(["k"], np.array([[0.5, 0.25]]))
    vectors, missing = DiskFeatureCache(tmp_path, 2).get_many(["k"])
    assert missing == [] and vectors[0].tolist() == [0.5, 0.25]


def write_segments(directory, n_segments: int, rows: int, dim: int) -> dict:
    """n_segments flushes of `rows` vectors each, as a chunked writer leaves them."""
    store, expected = VectorStore(directory, dim), {}
    for s in range(n_segments):
        keys = [f"{s}-{r}" for r in range(rows)]
        vectors = np.random.default_rng(s).normal(size=(rows, dim)).astype(np.float32)
        store.put_many(keys, vectors)
        store.flush()
        expected.update(zip(keys, vectors, strict=True))
    return expected


def test_opening_a_fragmented_store_merges_its_segments_without_losing_a_vector(tmp_path):
    expected = write_segments(tmp_path, COMPACT_AFTER_SEGMENTS + 8, rows=5, dim=3)
    assert len(list(tmp_path.glob("seg-*.npz"))) == COMPACT_AFTER_SEGMENTS + 8
    reopened = VectorStore(tmp_path, 3)
    assert len(list(tmp_path.glob("seg-*.npz"))) == 1 and reopened.segment_count == 1
    for store in (reopened, VectorStore(tmp_path, 3)):
        vectors, missing = store.get_many(list(expected))
        assert missing == [] and np.array_equal(vectors, np.stack(list(expected.values())))


def test_compaction_leaves_segments_written_by_others_since_it_opened(tmp_path):
    write_segments(tmp_path, 3, rows=2, dim=2)
    store = VectorStore(tmp_path, 2)
    other = VectorStore(tmp_path, 2)
    other.put_many(["late"], np.ones((1, 2)))
    other.flush()
    store.compact()
    vectors, missing = VectorStore(tmp_path, 2).get_many(["0-0", "2-1", "late"])
    assert missing == [] and vectors[2].tolist() == [1.0, 1.0]
    assert len(list(tmp_path.glob("seg-*.npz"))) == 2  # the merged one and the late one


def test_a_store_of_another_width_is_neither_read_nor_merged_away(tmp_path):
    write_segments(tmp_path, COMPACT_AFTER_SEGMENTS + 1, rows=1, dim=4)
    assert len(VectorStore(tmp_path, 2)) == 0
    assert len(list(tmp_path.glob("seg-*.npz"))) == COMPACT_AFTER_SEGMENTS + 1


def test_misses_are_committed_chunk_by_chunk_and_identical_pairs_computed_once(tmp_path, embedder, hh_dataset,
                                                                              caplog):
    instances = hh_dataset.instances[:9] + hh_dataset.instances[:1]  # the first pair twice
    descriptive = PrototypeTagger(embedder)
    tagger = Tagger(embedder, load_ner(Settings().ner_model), descriptive,
                    DiskFeatureCache(tmp_path, CACHED_WIDTH), chunk_size=4)
    with caplog.at_level(logging.INFO, logger="hyper_tagger.tagging"):
        values, misses = tagger.cached_values(instances)
    assert misses == 10 and np.array_equal(values[0], values[9])
    progress = [(r.done, r.total) for r in caplog.records if r.getMessage() == "tagging chunk committed"]
    assert progress == [(4, 9), (8, 9), (9, 9)]
    assert len(list(tmp_path.glob("seg-*.npz"))) == 3  # one commit per chunk
    cached, missing = DiskFeatureCache(tmp_path, CACHED_WIDTH).get_many([i.content_key() for i in instances])
    assert missing == [] and np.allclose(cached, values)


def test_tagging_stops_between_chunks_once_the_caller_is_gone_and_keeps_what_it_committed(
        tmp_path, embedder, hh_dataset, caplog):
    from hyper.core.errors import CallerGone

    instances = hh_dataset.instances[:12]
    tagger = Tagger(embedder, load_ner(Settings().ner_model), PrototypeTagger(embedder),
                    DiskFeatureCache(tmp_path, CACHED_WIDTH), chunk_size=4)
    asked = []

    def caller_waiting() -> bool:  # gone after the first chunk
        asked.append(True)
        return len(asked) == 1

    with caplog.at_level(logging.INFO, logger="hyper_tagger.tagging"), pytest.raises(CallerGone, match="4 of 12"):
        tagger.tag(instances, caller_waiting)
    assert [(r.done, r.total) for r in caplog.records if r.getMessage().startswith("tagging stopped")] == [(4, 12)]
    _, missing = DiskFeatureCache(tmp_path, CACHED_WIDTH).get_many([i.content_key() for i in instances])
    assert missing == list(range(4, 12))  # the first chunk is kept, nothing after it was computed


def test_a_key_put_again_takes_its_new_vector_and_unknown_keys_read_as_zeros(tmp_path):
    store = VectorStore(tmp_path, 2)
    store.put_many(["a", "b", "a"], np.array([[1, 1], [2, 2], [3, 3]]))  # the later "a" wins
    store.put_many(["b"], np.array([[4, 4]]))
    store.flush()
    for view in (store, VectorStore(tmp_path, 2)):
        vectors, missing = view.get_many(["x", "a", "b", "y"])
        assert missing == [0, 3] and vectors.tolist() == [[0, 0], [3, 3], [4, 4], [0, 0]]
        assert len(view) == 2
    assert VectorStore(tmp_path / "empty", 2).get_many(["a"])[1] == [0]


def test_a_store_grows_past_its_capacity_without_losing_a_row(tmp_path):
    store = VectorStore(tmp_path, 3)
    expected = {}
    for batch in range(7):  # 1, 2, 4, ... rows at a time: the matrix is grown several times
        keys = [f"{batch}-{k}" for k in range(2**batch)]
        vectors = np.random.default_rng(batch).normal(size=(len(keys), 3)).astype(np.float32)
        store.put_many(keys, vectors)
        expected.update(zip(keys, vectors, strict=True))
    vectors, missing = store.get_many(list(expected))
    assert missing == [] and np.array_equal(vectors, np.stack(list(expected.values())))


def test_content_keys_are_taken_at_once_and_a_bad_one_is_named_by_its_position():
    from hyper.core.errors import InvalidArgument
    from hyper_tagger.servicer import _content_keys

    good = [f"{k:016x}" for k in range(1000)]
    assert _content_keys(good, "keys") == good
    for bad in ("0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "0123456789abcde\n", ""):
        with pytest.raises(InvalidArgument) as refused:
            _content_keys([*good[:7], bad, *good[7:]], "keys", offset=10)
        assert refused.value.field == "keys[17]"


def test_lookups_while_other_threads_add_keys_never_see_a_row_before_its_vector(tmp_path):
    """The tagger answers MissingKeys and TagCached while another request commits new pairs."""
    import threading

    store = VectorStore(tmp_path, 4)
    done = threading.Event()
    seen_wrong: list[str] = []

    def writer(offset: int):
        for batch in range(60):
            keys = [f"{offset}-{batch}-{k}" for k in range(50)]
            store.put_many(keys, np.full((50, 4), 1.0 + offset))
            if batch % 10 == 0:
                store.flush()

    def reader(seed: int):
        rng = np.random.default_rng(seed)
        while not done.is_set():
            offset, batch = rng.integers(3), rng.integers(60)
            keys = [f"{offset}-{batch}-{k}" for k in range(50)]
            vectors, missing = store.get_many(keys)
            seen_wrong.extend(key for row, (key, vector) in enumerate(zip(keys, vectors, strict=True))
                              if row not in missing and not (vector == 1.0 + offset).all())

    writers = [threading.Thread(target=writer, args=(offset,)) for offset in range(3)]
    readers = [threading.Thread(target=reader, args=(seed,)) for seed in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    store.flush()
    assert seen_wrong == []
    assert len(VectorStore(tmp_path, 4)) == 3 * 60 * 50
