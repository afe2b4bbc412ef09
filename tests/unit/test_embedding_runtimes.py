"""The sentence model on ONNX Runtime gives PyTorch's values, under its own name and cache."""

import numpy as np
import pytest

from hyper.core.settings import Settings


@pytest.fixture(scope="module")
def embedders(tmp_path_factory):
    from hyper.method.embeddings import SentenceEmbedder

    cache = tmp_path_factory.mktemp("runtimes")
    model = Settings().embedding_model
    return (SentenceEmbedder(model, cache, runtime="torch"), SentenceEmbedder(model, cache, runtime="onnxruntime"),
            cache)


TEXTS = ["", "A short reply.", "Paris is the capital of France. " * 60,  # truncated at 256 tokens
         "def add(a, b):\n    return a + b", "Да, конечно.", "The cat sat on the mat. " * 5]


def test_onnx_runtime_gives_torchs_sentence_and_token_embeddings(embedders):
    torch_model, onnx_model, _ = embedders
    sentences_t, tokens_t = torch_model.encode_tokens(TEXTS)
    sentences_o, tokens_o = onnx_model.encode_tokens(TEXTS)
    assert np.abs(sentences_t - sentences_o).max() < 1e-5
    assert [len(t) for t in tokens_t] == [len(t) for t in tokens_o]
    assert max(np.abs(a - b).max() for a, b in zip(tokens_t, tokens_o, strict=True) if len(a)) < 1e-4
    assert np.abs(onnx_model.encode(TEXTS[::-1]) - sentences_o[::-1]).max() < 1e-6  # order kept


def test_each_runtime_has_its_own_identity_and_cache(embedders):
    torch_model, onnx_model, _ = embedders
    assert "|torch-" in torch_model.identity and "|onnxruntime-" in onnx_model.identity
    assert onnx_model.identity.endswith("torch.float32")
    assert torch_model.store.directory != onnx_model.store.directory


def test_the_onnx_export_is_made_once_and_reused(embedders):
    from hyper.method.embeddings import SentenceEmbedder

    _, onnx_model, cache = embedders
    (exported,) = cache.glob("onnx/*/model.onnx")
    written = exported.stat().st_mtime_ns
    again = SentenceEmbedder(Settings().embedding_model, cache, runtime="onnxruntime")
    assert exported.stat().st_mtime_ns == written
    assert np.abs(again.encode(TEXTS[1:3]) - onnx_model.encode(TEXTS[1:3])).max() == 0


def test_the_feature_set_version_names_the_runtime(embedders):
    from hyper_tagger.descriptive import PrototypeTagger
    from hyper_tagger.tagging import features_version
    from hyper_tagger.textual import load_ner

    torch_model, onnx_model, _ = embedders
    ner = load_ner(Settings().ner_model)
    assert features_version(torch_model, ner, PrototypeTagger) != features_version(onnx_model, ner, PrototypeTagger)


@pytest.fixture(scope="module")
def static_embedder(embedders):
    from hyper.method.embeddings import SentenceEmbedder

    _, _, cache = embedders
    return SentenceEmbedder(Settings().embedding_model, cache, runtime="static")


def test_the_static_runtime_is_distilled_once_and_named_apart(static_embedder, embedders):
    from hyper.method.embeddings import SentenceEmbedder

    torch_model, onnx_model, cache = embedders
    (distilled,) = cache.glob("static/*/model.safetensors")
    written = distilled.stat().st_mtime_ns
    again = SentenceEmbedder(Settings().embedding_model, cache, runtime="static")
    assert distilled.stat().st_mtime_ns == written
    assert np.abs(again.encode(TEXTS) - static_embedder.encode(TEXTS)).max() == 0
    assert "|model2vec-" in static_embedder.identity and static_embedder.identity.endswith("|float32")
    assert static_embedder.store.directory not in (torch_model.store.directory, onnx_model.store.directory)
    assert not list(cache.glob("static/*.tmp*"))  # written atomically


def test_static_vectors_cover_the_whole_text_token_by_token(static_embedder):
    sentences, tokens = static_embedder.encode_tokens(TEXTS)
    assert sentences.shape == (len(TEXTS), static_embedder.dim) == (len(TEXTS), 256)
    assert np.allclose(np.linalg.norm(sentences[1:], axis=1), 1, atol=1e-5)
    assert not sentences[0].any() and len(tokens[0]) == 0  # an empty text is the zero vector, no tokens
    counts = static_embedder.tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    assert [len(t) for t in tokens] == [len(ids) for ids in counts]  # no 256-token window
    assert all(np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5) for t in tokens if len(t))
    assert np.abs(static_embedder.encode(TEXTS[::-1]) - sentences[::-1]).max() == 0


def test_static_vectors_keep_the_model_s_sense_of_similarity(static_embedder, embedders):
    """Not the transformer's values, but the same order on plain cases: a paraphrase is closer
    than an unrelated text, for both models."""
    torch_model, _, _ = embedders
    texts = ["The cat sat on the mat.", "A cat was sitting on a rug.", "Interest rates rose by half a point."]
    for model in (torch_model, static_embedder):
        vectors = model.encode(texts)
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1


def test_the_cpu_judge_reads_transformer_embeddings_when_tagging_is_static(static_embedder, embedders):
    from hyper_tagger.server import judge_embedder

    _, onnx_model, cache = embedders
    home = cache.parent / "judge-home"
    home.mkdir(exist_ok=True)
    (home / "cache").symlink_to(cache)  # the same caches: the ONNX export is reused
    judge_side = judge_embedder(Settings(embedding_runtime="static", home=home), static_embedder)
    assert judge_side.identity == onnx_model.identity and judge_side.dim == 384
    assert judge_embedder(Settings(home=home), onnx_model) is onnx_model


def test_static_vectors_get_their_own_tag_set_whose_safety_tag_still_separates_red_team(static_embedder, embedders):
    """On static vectors the CPU backend scores centred centroids (nearest prototypes gave a
    red-team AUC of 0.80 there); `python -m bench.tags --backend static` measured 0.92 [0.89, 0.95] on
    the hand-labelled test set, and a change that blurs it fails here. The transformer keeps
    nearest prototypes, under the tag set's own name."""
    from bench import tags as bench_tags
    from hyper.core.stats import auc
    from hyper_tagger.descriptive import CentredCentroidTagger, PrototypeTagger, prototype_tagger

    torch_model, _, _ = embedders
    static_tags, transformer_tags = prototype_tagger(static_embedder), prototype_tagger(torch_model)
    assert isinstance(static_tags, CentredCentroidTagger) and type(transformer_tags) is PrototypeTagger
    assert static_tags.name.startswith("prototype-centroids-v1-") and static_tags.name != transformer_tags.name
    prompts = bench_tags.test_prompts()
    assert auc(static_tags.concern_scores(prompts.prompts), prompts.red_team) >= 0.9
