"""`opensesame train`: specs -> sessions -> features -> LightGBM -> a saved model with its report."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.adapters.kv import DiskBlobs
from pipeline.adapters.minilm import MiniLMEmbedder, load_embedder
from pipeline.errors import TrainingDataError
from pipeline.ranking.embedding import OperationEmbeddings
from pipeline.ranking.model import RankerModel
from pipeline.ranking.stats import PatternStats
from pipeline.runtime import build_predictor
from pipeline.settings import Settings
from pipeline.spec.catalogue import Catalogue
from train import corpus as corpus_mod
from train.base_data import save_base_data
from train.dataset import Corpus, Dataset, build, embed_prompts, generate, learn_patterns
from train.embedder_tuning import ensure_embedder
from train.evaluate import evaluate, load_cases
from train.fit import fit_ranker
from train.parallel import worker_count
from train.suite import evaluate_suite, load_suite


class _Stages:
    """Each stage's seconds, logged as it ends."""

    def __init__(self, log: Callable[[str], object]) -> None:
        self.log = log
        self.seconds: dict[str, float] = {}
        self.started = self._mark = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._mark, 1)
        self._mark = now
        self.log(f"[train] {name}: {self.seconds[name]} s")


def train(
    settings: Settings,
    out_dir: Path,
    log: Callable[[str], object] = print,
    embedder: MiniLMEmbedder | None = None,
    evaluate_dev: bool = True,
) -> tuple[RankerModel, dict[str, Any]]:
    cfg = settings.training
    stages = _Stages(log)
    workers = worker_count(cfg.workers)
    train_specs, valid_specs = _load_specs(settings, workers)
    stages.done(f"load {len(train_specs)} train + {len(valid_specs)} validation specs")

    if embedder is None:
        ensure_embedder(settings, log)
        embedder = load_embedder(settings.embedder)
    stages.done(f"embedder {embedder.name}")
    op_embeddings = OperationEmbeddings(embedder, DiskBlobs(settings.paths.embedding_cache), capacity=10_000)
    train_corpus = generate(train_specs, op_embeddings, cfg.seed, cfg.scale, cfg.history_fraction, cfg.shapes,
                            cfg.restyled)
    valid_corpus = generate(valid_specs, op_embeddings, cfg.seed + 1, cfg.scale, cfg.history_fraction, cfg.shapes,
                            cfg.restyled)
    stages.done(f"sessions + operation embeddings ({len(train_corpus.problems)} train / {len(valid_corpus.problems)} "
                "valid problems)")
    mixture = train_corpus.mixture(cfg.shapes)
    log("[train] session shapes, configured -> made: " + ", ".join(
        f"{shape} {share['configured']:.3f} -> {share['made']:.3f}" for shape, share in mixture.items()))

    patterns = learn_patterns(train_corpus)
    vectors = embed_prompts(train_corpus.problems + valid_corpus.problems, embedder)
    stages.done(f"patterns + {len(vectors)} prompt embeddings")

    train_ds = build(train_corpus, patterns, train_corpus.counts, settings.ranking, vectors, workers=workers)
    valid_ds = build(valid_corpus, patterns, valid_corpus.counts, settings.ranking, vectors, workers=workers)
    recall = f"candidate recall {train_ds.recall:.3f} / {valid_ds.recall:.3f}"
    stages.done(f"features on {workers} process(es) ({len(train_ds.y)} train rows, {recall})")

    info = {"train_specs": [n for n, _ in train_specs], "valid_specs": [n for n, _ in valid_specs]}
    model, report = fit_ranker(train_ds, valid_ds, patterns, cfg.fit, cfg.seed, info, embedder.name)
    stages.done("fit")
    if cfg.llm_problems:
        model, report, train_ds, valid_ds = _refit_with_llm(settings, model, embedder, train_corpus, valid_corpus,
                                                            patterns, vectors, info, workers)
        stages.done(f"llm over {report['llm']['problems']} problems + refit")
    model.save(out_dir)
    save_base_data(train_ds, valid_ds, settings.learning.base_data)
    report["model_version"] = model.version
    report["session_shapes"] = mixture
    report["model_dir"] = str(out_dir)
    if evaluate_dev and (cfg.dev_cases.exists() or cfg.dev_suite.exists()):
        report.update(_evaluate_dev(settings, model, embedder))
        stages.done("dev evaluation")
    report["stages_s"] = stages.seconds
    report["total_s"] = round(time.perf_counter() - stages.started, 1)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    return model, report


def _load_specs(settings: Settings, workers: int) -> tuple[list[tuple[str, Catalogue]], list[tuple[str, Catalogue]]]:
    """The training and validation specs, split by spec."""
    cfg = settings.training
    paths = corpus_mod.discover(cfg.data_dir)
    if not paths:
        raise TrainingDataError(
            f"no training specs under {cfg.data_dir} (expected specs/*.json and apisguru/*.yaml); "
            "pass --data DIR or set OPENSESAME__TRAINING__DATA_DIR"
        )
    split = corpus_mod.split(paths, cfg.valid_percent, cfg.max_specs)
    train_specs = corpus_mod.load_all(split.train, cfg.max_operations, workers)
    valid_specs = corpus_mod.load_all(split.valid, cfg.max_operations, workers)
    if not train_specs or not valid_specs:
        raise TrainingDataError(
            f"need training and validation specs, got {len(train_specs)} and {len(valid_specs)} from {cfg.data_dir}; "
            "add specs or change training.valid_percent"
        )
    return train_specs, valid_specs


def _refit_with_llm(
    settings: Settings, model: RankerModel, embedder: MiniLMEmbedder, train_corpus: Corpus, valid_corpus: Corpus,
    patterns: PatternStats, vectors: dict[str, np.ndarray], info: dict[str, Any], workers: int,
) -> tuple[RankerModel, dict[str, Any], Dataset, Dataset]:
    """The llm features need shortlists, which need a ranker: fit once without them, run the LLM over a sample of
    problems (train and validation alike), then fit again with their `llm` source filled in."""
    from train.llm_eval import Ask, llm_hits

    cfg = settings.training
    predictor = build_predictor(settings, model=model, embedder=embedder)
    rng = random.Random(cfg.seed)
    n_valid = round(cfg.llm_problems * len(valid_corpus.problems) / len(train_corpus.problems))
    asks = [
        Ask(p.id, corpus.specs[p.spec], p.events, p.prompt, p.expected)
        for corpus, n in ((train_corpus, cfg.llm_problems), (valid_corpus, n_valid))
        for p in rng.sample(corpus.problems, min(n, len(corpus.problems)))
    ]
    hits_by_problem, llm_info = llm_hits(predictor, asks, settings.llm)
    extra = {pid: {"llm": h} for pid, h in hits_by_problem.items()}
    train_ds = build(train_corpus, patterns, train_corpus.counts, settings.ranking, vectors, extra, workers)
    valid_ds = build(valid_corpus, patterns, valid_corpus.counts, settings.ranking, vectors, extra, workers)
    model, report = fit_ranker(train_ds, valid_ds, patterns, cfg.fit, cfg.seed, info, embedder.name)
    report["llm"] = {**llm_info, "problems": len(asks)}
    return model, report, train_ds, valid_ds


def _evaluate_dev(settings: Settings, model: RankerModel, embedder: MiniLMEmbedder) -> dict[str, Any]:
    """The gate's dev cases and the dev suite, without peers (`opensesame eval` adds them)."""
    cfg = settings.training
    predictor = build_predictor(settings, model=model, embedder=embedder)
    report: dict[str, Any] = {}
    if cfg.dev_cases.exists():
        dev = evaluate(predictor, load_cases(cfg.dev_cases), cfg.dev_cases.parent, settings.fetch)
        report["dev"] = {k: v for k, v in dev.items() if k != "misses"}
    if cfg.dev_suite.exists():
        report["dev_suite"] = evaluate_suite(predictor, load_suite(cfg.dev_suite, cfg.data_dir), settings.fetch)
    return report
