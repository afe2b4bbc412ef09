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
