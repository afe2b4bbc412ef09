"""The tagger's textual features, on the real offline models."""

import numpy as np
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from hyper.core.catalogue import TEXTUAL_DIMENSIONS
from hyper.core.schema import Instance
from hyper.core.settings import Settings
from hyper.method.embeddings import SentenceEmbedder
from hyper_tagger.textual import (
    RAW_DIMENSIONS,
    EntityExtractor,
    bertscore_f1,
    entity_similarity,
    lcs_length,
    length_penalised,
    load_ner,
    ner_identity,
    raw_textual_values,
    rouge_l,
    unique,
)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return SentenceEmbedder(Settings().embedding_model, tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def ner():
    return load_ner(Settings().ner_model)


def test_bertscore_is_one_for_identical_texts_and_lower_for_unrelated_ones(embedder):
    texts = ["The cat sat on the mat.", "The cat sat on the mat.", "Quarterly revenue rose 4%."]
    _, tokens = embedder.encode_tokens(texts)
    identical, unrelated = bertscore_f1([tokens[0], tokens[0]], [tokens[1], tokens[2]])
    assert identical == pytest.approx(1.0, abs=1e-5)
    assert unrelated < 0.8
    empty, nonempty = np.zeros((0, 3)), np.ones((2, 3))
    assert bertscore_f1([empty, empty], [nonempty, empty]).tolist() == [0.0, 1.0]


def test_length_penalty_follows_the_papers_formula():
    scores = length_penalised(np.array([1.0, 1.0, 1.0, 0.5]), ["a b", "a b c d", "", ""],
                              ["a b", "a b", "a", ""])
    assert scores.tolist() == pytest.approx([1.0, np.exp(1 - 2), 0.0, 0.5])


def test_entity_similarity_is_intersection_over_union(ner):
    a = ["Barack Obama visited Paris in 2015.", "Nothing to see here."]
    b = ["Obama flew to Paris.", "Nor here."]
    similarity = entity_similarity(ner, a, b)
    assert 0.0 < similarity[0] < 1.0  # "paris" is shared, the rest is not
    assert similarity[1] == 1.0  # no entities on either side


def test_every_textual_dimension_is_computed_in_catalogue_order(embedder, ner, hh_dataset):
    assert RAW_DIMENSIONS == TEXTUAL_DIMENSIONS
    raw = raw_textual_values(hh_dataset.instances[:20], embedder, ner)
    assert raw.shape == (20, 9) and np.isfinite(raw).all()
    values = dict(zip(RAW_DIMENSIONS, raw.T, strict=True))
    for name in ("bertscore", "bertscore_length", "entity_sim", "rouge"):
        assert ((values[name] >= 0) & (values[name] <= 1 + 1e-6)).all(), name
    assert (values["bertscore_length"] <= values["bertscore"] + 1e-9).all()
    assert (values["len_longer"] >= values["len_shorter"]).all()
    same = Instance("x", "Say hi.", "Hello there!", "Hello there!")
    identical = dict(zip(RAW_DIMENSIONS, raw_textual_values([same], embedder, ner)[0], strict=True))
    assert identical["bertscore"] == pytest.approx(1.0, abs=1e-5)
    assert identical["cosine_sim"] == pytest.approx(1.0, abs=1e-5)
    assert identical["token_len_diff"] == 0 and identical["rouge"] == 1.0


def test_a_response_shared_by_several_pairs_gives_each_pair_the_values_it_has_alone(embedder, ner):
    shared = "Paris is the capital of France, and Berlin that of Germany."
    pairs = [Instance("a", "Capitals?", shared, "Paris, I think."),
             Instance("b", "Capitals?", "Rome is in Italy.", shared),
             Instance("c", "Again?", shared, shared)]
    together = raw_textual_values(pairs, embedder, ner)
    alone = np.vstack([raw_textual_values([pair], embedder, ner) for pair in pairs])
    assert np.allclose(together, alone, atol=1e-5)
    assert entity_similarity(ner, [shared, shared], ["Paris, I think.", shared]).tolist()[1] == 1.0


words = st.lists(st.sampled_from(["cat", "cats", "sat", "mat", "the", "running", "runs", "a", "", "2", "Ünïcode"]),
                 max_size=90).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(words, words)
def test_rouge_l_is_rouge_scores_own_value_to_the_last_digit(a, b):
    expected = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(b, a)["rougeL"].fmeasure
    assert rouge_l([a], [b])[0] == expected


def test_rouge_l_agrees_with_rouge_score_on_real_responses(hh_dataset):
    instances = hh_dataset.instances[:200]
    a, b = [i.response_a for i in instances], [i.response_b for i in instances]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert rouge_l(a, b).tolist() == [scorer.score(y, x)["rougeL"].fmeasure for x, y in zip(a, b, strict=True)]


@given(st.lists(st.integers(0, 4), max_size=70), st.lists(st.integers(0, 4), max_size=70))
def test_bit_parallel_lcs_is_the_dynamic_programme(a, b):
    table = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1, j + 1] = table[i, j] + 1 if x == y else max(table[i, j + 1], table[i + 1, j])
    assert lcs_length([str(x) for x in a], [str(y) for y in b]) == table[-1, -1]


def test_ner_without_the_shared_tok2vec_finds_the_same_entities(ner, hh_dataset):
    assert "tok2vec" not in ner.pipeline.pipe_names
    full = spacy.load(Settings().ner_model, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter",
                                                     "morphologizer"])
    texts = [i.response_a for i in hh_dataset.instances[:150]]
    assert [[(e.text, e.label_) for e in doc.ents] for doc in ner.pipeline.pipe(texts)] == \
        [[(e.text, e.label_) for e in doc.ents] for doc in full.pipe(texts)]


def test_ner_worker_processes_find_the_same_entities_and_survive_a_killed_worker(ner, hh_dataset):
    """Spread over two spawned processes, in order, under the same identity; a worker killed (as
    for memory) costs a restart of the pool, not the request."""
    import os
    import signal

    texts = unique([t for i in hh_dataset.instances[:200] for t in (i.response_a, i.response_b)])
    assert len(texts) > 3 * EntityExtractor.CHUNK
    spread = EntityExtractor(Settings().ner_model, processes=2)
    try:
        assert spread.identity == ner_identity(ner)
        expected = ner.entity_sets(texts)
        assert spread.entity_sets(texts) == expected and any(expected)
        for pid in list(spread._pool._processes):
            os.kill(pid, signal.SIGKILL)
        assert spread.entity_sets(texts[::-1]) == expected[::-1]
    finally:
        spread.close()


def test_textual_values_are_the_same_with_ner_workers(embedder, ner, hh_dataset):
    instances = hh_dataset.instances[:60]
    spread = EntityExtractor(Settings().ner_model, processes=2)
    try:
        assert np.array_equal(raw_textual_values(instances, embedder, spread),
                              raw_textual_values(instances, embedder, ner))
    finally:
        spread.close()
