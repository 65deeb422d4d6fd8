"""The simple peers the ranker must beat, scored on the very cases it is: a ranker that loses to one of them
is not worth its machinery.

- `bm25`: BM25 (bm25s, Lucene's variant) of the prompt over the operation texts the embedder reads.
- `minilm`: the packaged MiniLM's cosine of the prompt to each operation, nudged toward the last call (the
  `retrieval` source's own score): what a plain embedding search answers.
- `tuned`: the same with the fine-tuned embedder the ranker uses (only when it is not the packaged one).
- `repeat+minilm`: the last call's operation first, the rest by `minilm`: "users repeat what they just did".

Every peer scores every operation of the spec; ties go to catalogue order, so a peer that knows nothing (no
prompt, no history) answers the catalogue's first operations, as a user scrolling the docs would see them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bm25s
import numpy as np

from pipeline.cache import BlobStore
from pipeline.ranking.context import Event, PreparedSpec
from pipeline.ranking.embedding import CachedEmbedder, Embedder, OperationEmbeddings, operation_text
from pipeline.ranking.sources import LAST_CALL_WEIGHT
from pipeline.spec.catalogue import words

PEER_NAMES = ("bm25", "minilm", "tuned", "repeat+minilm")


def rank_of(scores: np.ndarray, expected: int) -> int:
    """1-based rank of `expected` when ties are broken by catalogue order."""
    better = scores > scores[expected]
    tied_before = scores[:expected] == scores[expected]
    return int(better.sum() + tied_before.sum()) + 1


def _tokens(text: str) -> list[str]:
    return [w.lower() for w in words(text)]


@dataclass(slots=True)
class Cosine:
    """Prompt and last-call cosine over one embedder's vectors of the operations."""

    embedder: CachedEmbedder
    operations: OperationEmbeddings

    @classmethod
    def of(cls, embedder: Embedder, blobs: BlobStore | None = None) -> Cosine:
        """`blobs`: where operation vectors are cached between runs (the store the predictor's use)."""
        return cls(CachedEmbedder(embedder), OperationEmbeddings(embedder, blobs))

    def scores(self, spec: PreparedSpec, prompt: str, last: int | None) -> np.ndarray:
        vectors = self.operations.get(spec.catalogue)
        scores = np.zeros(len(vectors), dtype=np.float32)
        if prompt.strip():
            scores += vectors @ self.embedder.embed([prompt.strip()])[0]
        if last is not None:
            scores += LAST_CALL_WEIGHT * (vectors @ vectors[last])
        return scores


@dataclass(slots=True)
class Peers:
    """Scores every peer for one case. `stock` is the packaged MiniLM; `tuned` the ranker's own embedder and
    operation vectors (the predictor's, so nothing is embedded twice), dropped when it is the packaged MiniLM
    too: `tuned` would repeat `minilm`."""

    stock: Cosine
    tuned: Cosine | None = None
    _bm25: dict[str, bm25s.BM25] = field(default_factory=dict)
    _cosines: dict[str, Cosine] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cosines["minilm"] = self.stock
        if self.tuned is not None and self.tuned.embedder.name != self.stock.embedder.name:
            self._cosines["tuned"] = self.tuned

    @property
    def names(self) -> list[str]:
        return [name for name in PEER_NAMES if name != "tuned" or "tuned" in self._cosines]

    def ranks(self, spec: PreparedSpec, events: list[Event], prompt: str, expected: str) -> dict[str, int | None]:
        """Each peer's rank of the expected operation (None when the spec has no such operation)."""
        target = spec.profile.index.get(expected)
        if target is None:
            return {name: None for name in self.names}
        matched = [m.operation for m in (spec.matcher.match(e.endpoint) for e in events) if m.operation is not None]
        last = spec.profile.index[matched[-1].id] if matched else None
        minilm = self._cosines["minilm"].scores(spec, prompt, last)
        scores = {"bm25": self._bm25_scores(spec, prompt), "minilm": minilm}
        if "tuned" in self._cosines:
            scores["tuned"] = self._cosines["tuned"].scores(spec, prompt, last)
        repeat = minilm.copy()
        if last is not None:
            repeat[last] = float(minilm.max()) + 1.0
        scores["repeat+minilm"] = repeat
        return {name: rank_of(scores[name], target) for name in self.names}

    def _bm25_scores(self, spec: PreparedSpec, prompt: str) -> np.ndarray:
        n = len(spec.catalogue.operations)
        query = _tokens(prompt)
        if not query:
            return np.zeros(n, dtype=np.float32)
        index = self._bm25.get(spec.content_hash)
        if index is None:
            index = self._bm25[spec.content_hash] = bm25s.BM25()
            corpus = [_tokens(operation_text(op)) or ["_"] for op in spec.catalogue.operations]
            vocabulary: dict[str, int] = {}
            ids = [[vocabulary.setdefault(token, len(vocabulary)) for token in doc] for doc in corpus]
            index.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocabulary), show_progress=False)
        known = [token for token in query if token in index.vocab_dict]
        if not known:
            return np.zeros(n, dtype=np.float32)
        return np.asarray(index.get_scores(known), dtype=np.float32)
