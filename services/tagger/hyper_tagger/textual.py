"""Textual features of a preference pair: how alike the two responses are, and lengths.

The paper's nine: BERTScore between the responses and its length-penalised variant, ROUGE-L,
cosine similarity of sentence embeddings, entity-set similarity, and token lengths (prompt,
shorter and longer response, their difference). One forward pass of the sentence model gives
both the sentence embeddings (cosine) and the token embeddings (BERTScore).
"""

from __future__ import annotations

import numpy as np
from rouge_score import rouge_scorer

from hyper.core.catalogue import COMPUTED_TEXTUAL
from hyper.core.schema import Instance
from hyper.method.embeddings import SentenceEmbedder

# Order of the raw values as cached; the catalogue's names for them.
RAW_DIMENSIONS = COMPUTED_TEXTUAL


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def bertscore_f1(tokens_a: list[np.ndarray], tokens_b: list[np.ndarray]) -> np.ndarray:
    """BERTScore F1 (Zhang et al., 2020) of A against B: greedy cosine matching of token
    embeddings, without idf weighting or baseline rescaling. An empty response matches
    nothing (0), two empty responses are identical (1)."""
    scores = np.zeros(len(tokens_a))
    for k, (a, b) in enumerate(zip(tokens_a, tokens_b, strict=True)):
        if len(a) == 0 or len(b) == 0:
            scores[k] = float(len(a) == len(b))
            continue
        similarity = a @ b.T
        precision, recall = similarity.max(axis=1).mean(), similarity.max(axis=0).mean()
        scores[k] = 2 * precision * recall / max(precision + recall, 1e-12)
    return scores


def length_penalised(bertscore: np.ndarray, responses_a: list[str], responses_b: list[str]) -> np.ndarray:
    """BERTScore x exp(1 - longer / shorter), in words, as the paper's code does."""
    words_a = np.array([len(text.split()) for text in responses_a], dtype=np.float64)
    words_b = np.array([len(text.split()) for text in responses_b], dtype=np.float64)
    longer, shorter = np.maximum(words_a, words_b), np.minimum(words_a, words_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        penalty = np.where(shorter > 0, np.exp(1.0 - longer / np.maximum(shorter, 1)),
                           (longer == 0).astype(np.float64))
    return bertscore * penalty


def rouge_l(responses_a: list[str], responses_b: list[str]) -> np.ndarray:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array([scorer.score(b, a)["rougeL"].fmeasure
                     for a, b in zip(responses_a, responses_b, strict=True)])


def load_ner(model: str):
    """A spaCy pipeline with only what named entities need (tok2vec, ner)."""
    import spacy

    return spacy.load(model, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler",
                                      "senter", "morphologizer"])


def ner_identity(ner) -> str:
    meta = ner.meta
    return f"spacy-{meta['lang']}_{meta['name']}-{meta['version']}|{','.join(ner.pipe_names)}"


def unique(texts: list[str]) -> list[str]:
    """Each text once, in first-seen order: responses and prompts repeat across pairs (PandaLM's
    999 pairs hold 705 distinct responses), and every model pass is per text."""
    return list(dict.fromkeys(texts))


def entity_similarity(ner, responses_a: list[str], responses_b: list[str]) -> np.ndarray:
    """Intersection over union of the named entities (lower-cased); 1 when neither has any."""
    texts = unique(responses_a + responses_b)
    docs = ner.pipe(texts, batch_size=256)
    entities = {text: {entity.text.lower() for entity in doc.ents} for text, doc in zip(texts, docs, strict=True)}
    pairs = [(entities[a], entities[b]) for a, b in zip(responses_a, responses_b, strict=True)]
    return np.array([len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs])


def token_counts(tokenizer, texts: list[str]) -> np.ndarray:
    distinct = unique(texts)
    encoded = tokenizer(distinct, add_special_tokens=False, truncation=False)["input_ids"]
    counts = dict(zip(distinct, (len(ids) for ids in encoded), strict=True))
    return np.array([counts[text] for text in texts], dtype=np.float64)


def raw_textual_values(instances: list[Instance], embedder: SentenceEmbedder, ner) -> np.ndarray:
    """(n, len(RAW_DIMENSIONS)) raw values; lengths are token counts, not yet ranked."""
    responses_a = [i.response_a for i in instances]
    responses_b = [i.response_b for i in instances]
    texts = unique(responses_a + responses_b)
    row = {text: k for k, text in enumerate(texts)}
    rows_a, rows_b = [row[text] for text in responses_a], [row[text] for text in responses_b]
    sentences, tokens = embedder.encode_tokens(texts)
    bertscore = bertscore_f1([tokens[k] for k in rows_a], [tokens[k] for k in rows_b])
    len_a = token_counts(embedder.tokenizer, responses_a)
    len_b = token_counts(embedder.tokenizer, responses_b)
    columns = {
        "bertscore": bertscore,
        "bertscore_length": length_penalised(bertscore, responses_a, responses_b),
        "cosine_sim": rowwise_cosine(sentences[rows_a], sentences[rows_b]),
        "entity_sim": entity_similarity(ner, responses_a, responses_b),
        "len_longer": np.maximum(len_a, len_b),
        "len_shorter": np.minimum(len_a, len_b),
        "prompt_len": token_counts(embedder.tokenizer, [i.prompt for i in instances]),
        "rouge": rouge_l(responses_a, responses_b),
        "token_len_diff": np.abs(len_a - len_b),
    }
    return np.stack([columns[name] for name in RAW_DIMENSIONS], axis=1)
