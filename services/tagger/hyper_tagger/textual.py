"""Textual features of a preference pair: how alike the two responses are, and lengths.

The paper's nine: BERTScore between the responses and its length-penalised variant, ROUGE-L,
cosine similarity of sentence embeddings, entity-set similarity, and token lengths (prompt,
shorter and longer response, their difference). One forward pass of the sentence model gives
both the sentence embeddings (cosine) and the token embeddings (BERTScore).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from nltk.stem import porter
from rouge_score import scoring, tokenize

from hyper.core.catalogue import COMPUTED_TEXTUAL
from hyper.core.schema import Instance
from hyper.method.embeddings import SentenceEmbedder

log = logging.getLogger(__name__)

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


class RougeTokens:
    """rouge-score's tokens of a text (lower case, alphanumeric, Porter-stemmed), each distinct
    word stemmed once: the stemmer is most of ROUGE's time, and responses share their words."""

    def __init__(self):
        self.stem = functools.lru_cache(maxsize=1 << 16)(porter.PorterStemmer().stem)

    def __call__(self, text: str) -> list[str]:
        return tokenize.tokenize(text, self)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyro, 2004): one big-integer
    step per token of `b` instead of a row of the dynamic-programming table."""
    masks: dict[str, int] = {}
    for position, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << position)
    full = (1 << len(a)) - 1
    row = full  # a 0 bit marks where the LCS grew
    for token in b:
        matched = row & masks.get(token, 0)
        row = ((row + matched) | (row - matched)) & full
    return len(a) - row.bit_count()


def rouge_l(responses_a: list[str], responses_b: list[str]) -> np.ndarray:
    """ROUGE-L F-measure of A (prediction) against B (target), as rouge-score's
    `RougeScorer(["rougeL"], use_stemmer=True).score(b, a)` gives it, to the last digit."""
    tokens = dict(zip(texts := unique(responses_a + responses_b), map(RougeTokens(), texts), strict=True))
    scores = np.zeros(len(responses_a))
    for k, (a, b) in enumerate(zip(responses_a, responses_b, strict=True)):
        prediction, target = tokens[a], tokens[b]
        if prediction and target:
            common = lcs_length(prediction, target)
            scores[k] = scoring.fmeasure(common / len(prediction), common / len(target))
    return scores


def spacy_ner(model: str):
    """A spaCy pipeline with only what named entities need."""
    import spacy

    ner = spacy.load(model, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter",
                                     "morphologizer"])
    # The English core pipelines' ner carries its own tok2vec: the shared one then feeds nothing
    # and only costs time (a third of NER's on PandaLM).
    if "tok2vec" in ner.pipe_names and not ner.get_pipe("tok2vec").listening_components:
        ner.remove_pipe("tok2vec")
    return ner


def _entities(ner, texts: list[str]) -> list[list[str]]:
    return [sorted({entity.text.lower() for entity in doc.ents}) for doc in ner.pipe(texts, batch_size=256)]


_worker_ner = None  # a NER worker process's own pipeline


def _load_worker(model: str, parent: int) -> None:
    global _worker_ner
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    _worker_ner = spacy_ner(model)


def _exit_when_orphaned(parent: int) -> None:
    """A tagger killed outright (SIGKILL, OOM) cannot stop its workers, which would wait for work
    forever holding a pipeline's memory each: they leave on their own once their parent is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _worker_entities(texts: list[str]) -> list[list[str]]:
    return _entities(_worker_ner, texts)


class EntityExtractor:
    """Each text's named entities (lower-cased) by a spaCy pipeline: in this process, or spread
    over `processes` worker processes with a copy each (HYPER_NER_PROCESSES). NER is the tagger's
    costliest stage after the sentence model, and spaCy runs it on one core. The workers are
    spawned, never forked: a forked copy of a gRPC server's threads can deadlock."""

    CHUNK = 64  # texts per task: small enough that both workers stay busy to the end

    def __init__(self, model: str, processes: int = 1):
        self.model, self.processes = model, processes
        self.pipeline = spacy_ner(model)
        meta = self.pipeline.meta
        self.identity = f"spacy-{meta['lang']}_{meta['name']}-{meta['version']}|{','.join(self.pipeline.pipe_names)}"
        self._pool = self._start_pool() if processes > 1 else None
        self._restart_lock = threading.Lock()

    def _start_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_load_worker, initargs=(self.model, os.getpid()))
        for _ in range(self.processes):  # a spawning pool starts a worker per task while none is idle:
            pool.submit(_worker_entities, [])  # all of them now, loading while the server starts
        return pool

    def submit(self, texts: list[str]) -> Callable[[], list[set[str]]]:
        """Starts finding the texts' entities in the workers and returns the call that waits for
        them, so that the caller computes other features meanwhile; in-process, that call does
        the work."""
        if self._pool is None or len(texts) <= self.CHUNK:
            return lambda: [set(found) for found in _entities(self.pipeline, texts)]
        chunks = [texts[start:start + self.CHUNK] for start in range(0, len(texts), self.CHUNK)]
        pool = self._pool
        try:
            futures = [pool.submit(_worker_entities, chunk) for chunk in chunks]
        except BrokenProcessPool:  # seen broken already: start afresh
            pool = self._restarted(pool)
            futures = [pool.submit(_worker_entities, chunk) for chunk in chunks]

        def collect() -> list[set[str]]:
            try:
                found = [future.result() for future in futures]
            except BrokenProcessPool:  # a worker died (killed for memory): start afresh, try once more
                found = list(self._restarted(pool).map(_worker_entities, chunks))
            return [set(entities) for chunk in found for entities in chunk]

        return collect

    def _restarted(self, broken):
        with self._restart_lock:
            if self._pool is broken:  # not yet restarted by a concurrent request
                log.warning("a NER worker process died; restarting the pool", extra={"processes": self.processes})
                self._pool = self._start_pool()
            return self._pool

    def entity_sets(self, texts: list[str]) -> list[set[str]]:
        return self.submit(texts)()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def load_ner(model: str, processes: int = 1) -> EntityExtractor:
    return EntityExtractor(model, processes)


def ner_identity(ner: EntityExtractor) -> str:
    """The pipeline by name, version and components; not the process count, which changes no value."""
    return ner.identity


def unique(texts: list[str]) -> list[str]:
    """Each text once, in first-seen order: responses and prompts repeat across pairs (PandaLM's
    999 pairs hold 705 distinct responses), and every model pass is per text."""
    return list(dict.fromkeys(texts))


def entity_similarity(ner: EntityExtractor, responses_a: list[str], responses_b: list[str]) -> np.ndarray:
    texts = unique(responses_a + responses_b)
    return entity_iou(dict(zip(texts, ner.entity_sets(texts), strict=True)), responses_a, responses_b)


def entity_iou(entities: dict[str, set[str]], responses_a: list[str], responses_b: list[str]) -> np.ndarray:
    """Intersection over union of the named entities (lower-cased); 1 when neither has any."""
    pairs = [(entities[a], entities[b]) for a, b in zip(responses_a, responses_b, strict=True)]
    return np.array([len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs])


def token_counts(tokenizer, texts: list[str]) -> np.ndarray:
    distinct = unique(texts)
    encoded = tokenizer(distinct, add_special_tokens=False, truncation=False)["input_ids"]
    counts = dict(zip(distinct, (len(ids) for ids in encoded), strict=True))
    return np.array([counts[text] for text in texts], dtype=np.float64)


def raw_textual_values(instances: list[Instance], embedder: SentenceEmbedder, ner: EntityExtractor) -> np.ndarray:
    """(n, len(RAW_DIMENSIONS)) raw values; lengths are token counts, not yet ranked."""
    responses_a = [i.response_a for i in instances]
    responses_b = [i.response_b for i in instances]
    texts = unique(responses_a + responses_b)
    entities = ner.submit(texts)  # with NER workers, they run while the rest is computed here
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
        "entity_sim": entity_iou(dict(zip(texts, entities(), strict=True)), responses_a, responses_b),
        "len_longer": np.maximum(len_a, len_b),
        "len_shorter": np.minimum(len_a, len_b),
        "prompt_len": token_counts(embedder.tokenizer, [i.prompt for i in instances]),
        "rouge": rouge_l(responses_a, responses_b),
        "token_len_diff": np.abs(len_a - len_b),
    }
    return np.stack([columns[name] for name in RAW_DIMENSIONS], axis=1)
