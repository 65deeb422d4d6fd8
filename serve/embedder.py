"""`Embedder` deployment: the configured MiniLM (`embedder.model_dir`: fine-tuned, or the packaged one) for prompts
(batched across requests) and for operation texts (cached by spec)."""

from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from pipeline.adapters.kv import ResilientStore
from pipeline.adapters.minilm import load_embedder
from pipeline.ranking.embedding import CachedEmbedder, OperationEmbeddings
from pipeline.settings import Settings

# Concurrent prompts are encoded in one forward pass. Under load requests queue while a batch runs, so the
# next batch fills without waiting; the short wait only bounds what a lone request pays.
MAX_BATCH = 16
BATCH_WAIT_S = 0.001


@serve.deployment  # max_ongoing_requests (config) >= 2 x MAX_BATCH, so batches fill under load
class EmbedderDeployment:
    def __init__(self, settings: Settings) -> None:
        model = load_embedder(settings.embedder)
        self.prompts = CachedEmbedder(model)
        self.operations = OperationEmbeddings(model, ResilientStore(settings.cache), settings.cache.catalogue_ttl_s)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _embed_batch(self, texts: list[str]) -> list[np.ndarray]:
        return list(await asyncio.to_thread(self.prompts.embed, texts))

    async def embed_prompt(self, text: str) -> np.ndarray:
        return await self._embed_batch(text)

    async def operation_vectors(self, spec_hash: str, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.operations.get_texts, spec_hash, texts)
