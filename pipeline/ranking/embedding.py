"""Sentence embeddings as the ranking sees them: the `Embedder` contract, caches, and the operation texts.

The model itself is an adapter (`pipeline.adapters.minilm`). Operation texts are embedded once per spec content
hash (`OperationEmbeddings`), prompts once per distinct text (a small LRU: a client usually repeats the same
prompt over a session's calls).
"""

from __future__ import annotations

import io
from typing import Protocol

import numpy as np

from pipeline.cache import LRU, BlobStore
from pipeline.errors import OpenSesameError
from pipeline.spec.catalogue import Catalogue, Operation, words

EMBEDDING_DIM = 384

# The packaged model's name; a fine-tuned copy is named by its weights (`tuned-<sha256[:12]>`), so vectors cached
# for one are never read for another, and a ranker knows which embedder its features came from. Alone, it names
# the float32 vectors of rankers trained before the embedder was recorded; since operation texts are embedded
# in int8 (pipeline/adapters/minilm.py), names end in `-int8`.
STOCK_EMBEDDER = "all-MiniLM-L6-v2"


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
        """Unit-length float32 vectors, one row per text, each independent of the texts beside it (prompts)."""
        ...

    def embed_operations(self, texts: list[str]) -> np.ndarray:
        """The same for a spec's operation texts, many at once: faster, and a row may depend on the batch it
        ran in (the same spec always gives the same rows)."""
        ...


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
            matrix = self._embedder.embed_operations(texts)
            if self._blobs is not None:
                buffer = io.BytesIO()
                np.save(buffer, matrix)
                self._blobs.set(key, buffer.getvalue(), self._ttl_s)
        self._memory.set(key, matrix)
        return matrix
