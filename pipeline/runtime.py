"""Building an in-process predictor from settings: the one place that loads the model and MiniLM."""

from __future__ import annotations

from pathlib import Path

from pipeline.adapters.kv import DiskBlobs
from pipeline.adapters.minilm import MiniLMEmbedder, load_embedder
from pipeline.ranking.embedding import CachedEmbedder, OperationEmbeddings, require_embedder
from pipeline.ranking.model import RankerModel
from pipeline.ranking.predict import Predictor
from pipeline.ranking.stats import InMemoryTransitions, TransitionCounts
from pipeline.settings import Settings


def build_predictor(
    settings: Settings,
    model: RankerModel | None = None,
    model_dir: Path | None = None,
    counts: TransitionCounts | None = None,
    embedder: MiniLMEmbedder | None = None,
) -> Predictor:
    model = model or RankerModel.load(model_dir or settings.paths.model_dir)
    embedder = embedder or load_embedder(settings.embedder)
    require_embedder(model.meta.embedder, embedder.name)
    return Predictor(
        model=model,
        counts=counts or InMemoryTransitions(),
        settings=settings.ranking,
        embedder=CachedEmbedder(embedder),
        op_embeddings=OperationEmbeddings(embedder, DiskBlobs(settings.paths.embedding_cache)),
    )
