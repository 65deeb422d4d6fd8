"""`Embedder` deployment: MiniLM for prompts (batched across requests) and for operation texts (cached by spec).

Every call names the embedder the asking ranker was trained on. A replica serves each embedder its settings can
(`pipeline.adapters.minilm.servable`: the packaged MiniLM, and the fine-tuned one once it exists), loading one on
its first use, so a service that started on the packaged MiniLM switches to the tuned one with the ranker that
needs it, in one hot reload.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np
from ray import serve

from pipeline.adapters.kv import ResilientStore
from pipeline.adapters.minilm import MiniLMEmbedder, load_named, servable
from pipeline.ranking.embedding import CachedEmbedder, OperationEmbeddings
from pipeline.settings import Settings

# Concurrent prompts are encoded in one forward pass. Under load requests queue while a batch runs, so the
# next batch fills without waiting; the short wait only bounds what a lone request pays.
MAX_BATCH = 16
BATCH_WAIT_S = 0.001


@serve.deployment  # max_ongoing_requests (config) >= 2 x MAX_BATCH, so batches fill under load
class EmbedderDeployment:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ResilientStore(settings.cache)
        self.prompts: dict[str, CachedEmbedder] = {}
        self.operations: dict[str, OperationEmbeddings] = {}
        self._loading = asyncio.Lock()
        # The best embedder there is now (the tuned one once it exists) is ready before the first request.
        self._add(load_named(list(servable(settings.embedder))[-1], settings.embedder))

    def _add(self, model: MiniLMEmbedder) -> None:
        cache = self.settings.cache
        self.operations[model.name] = OperationEmbeddings(model, self.store, cache.catalogue_ttl_s, cache.prepared_specs)
        self.prompts[model.name] = CachedEmbedder(model, cache.vectors)

    async def load(self, name: str) -> None:
        """Makes `name` ready here; EmbedderMismatchError when these settings cannot serve it."""
        if name in self.prompts:
            return
        async with self._loading:  # one load per embedder, however many requests arrive for it
            if name not in self.prompts:
                self._add(await asyncio.to_thread(load_named, name, self.settings.embedder))

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _embed_batch(self, texts: list[str], names: list[str]) -> list[np.ndarray]:
        positions: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(names):
            positions[name].append(i)
        vectors: list[np.ndarray] = [np.empty(0)] * len(texts)
        for name, where in positions.items():
            batch = await asyncio.to_thread(self.prompts[name].embed, [texts[i] for i in where])
            for i, vector in zip(where, batch):
                vectors[i] = vector
        return vectors

    async def embed_prompt(self, text: str, embedder: str) -> np.ndarray:
        await self.load(embedder)
        return await self._embed_batch(text, embedder)

    async def operation_vectors(self, spec_hash: str, texts: list[str], embedder: str) -> np.ndarray:
        await self.load(embedder)
        return await asyncio.to_thread(self.operations[embedder].get_texts, spec_hash, texts)
