"""What several commands share: where a result and progress go, the settings and model a command runs with, the
options every model-reading command takes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.settings import Settings, get_settings

if TYPE_CHECKING:
    from pipeline.ranking.predict import Predictor
    from train.peers import Peers
    from train.suite import Suite

# The parser of a command group (`argparse` keeps its class private).
Commands = argparse._SubParsersAction
PACKAGED = "packaged"
TMDB_SPEC = Path(__file__).resolve().parents[2] / "train" / "devsets" / "tmdb_oas.json"  # shipped with the code
SERVICE_URL = "http://127.0.0.1:8000"  # where `make serve` listens


def progress(line: str) -> None:
    """Progress of a long command, on stderr: stdout carries its result (JSON with --json)."""
    print(line, file=sys.stderr, flush=True)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def add_service_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=SERVICE_URL, help=f"the running service (default {SERVICE_URL})")


def add_model(parser: argparse.ArgumentParser, what: str = "model directory") -> None:
    """`--model` and `--embedder`: the ranker and the embedder a command predicts with."""
    parser.add_argument("--model", help=f"{what} (default: paths.model_dir)")
    add_embedder(parser)


def add_embedder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embedder", help=f"a fine-tuned embedder directory, or `{PACKAGED}` for the packaged "
                        "MiniLM (default: embedder.model_dir)")


def model_dir(args: argparse.Namespace) -> Path:
    return Path(args.model) if getattr(args, "model", None) else get_settings().paths.model_dir


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings, with `--embedder` (a directory, or `packaged`) over `embedder.model_dir`."""
    settings = get_settings()
    if getattr(args, "embedder", None) is None:
        return settings
    embedder_dir = None if args.embedder == PACKAGED else Path(args.embedder)
    return settings.model_copy(update={"embedder": settings.embedder.model_copy(update={"model_dir": embedder_dir})})


def ensure_model(directory: Path, settings: Settings) -> None:
    """`predict`, `eval`, `bench` and `import` train a default model first when there is none, or only one of
    another feature schema (as `make serve` does)."""
    from pipeline.ranking.features import SCHEMA_VERSION
    from pipeline.ranking.model import model_signature

    signature = model_signature(directory)
    schema = signature[0] if signature else None
    if schema == SCHEMA_VERSION:
        return
    from train.run import train

    found = f"a model of feature schema {schema}" if schema else "no ranker model"
    print(f"{found} in {directory}: training one first (opensesame train)", file=sys.stderr)
    train(settings, directory, log=progress)


def load_predictor(args: argparse.Namespace) -> Predictor:
    from pipeline.runtime import build_predictor

    directory, settings = model_dir(args), settings_of(args)
    ensure_model(directory, settings)
    return build_predictor(settings, model_dir=directory)


def load_peers(args: argparse.Namespace, predictor: Predictor) -> Peers:
    """The peers of an evaluation: the packaged MiniLM always, the predictor's embedder when it is another."""
    from pipeline.adapters.kv import DiskBlobs
    from pipeline.adapters.minilm import load_embedder
    from train.peers import Cosine, Peers

    settings = settings_of(args)
    stock = load_embedder(settings.embedder.model_copy(update={"model_dir": None}))
    tuned = None
    if predictor.embedder is not None and predictor.op_embeddings is not None:
        tuned = Cosine(predictor.embedder, predictor.op_embeddings)
    return Peers(stock=Cosine.of(stock, DiskBlobs(settings.paths.embedding_cache)), tuned=tuned)


def read_suite(args: argparse.Namespace) -> Suite:
    from train.suite import load_suite

    settings = get_settings()
    return load_suite(Path(args.suite or settings.training.dev_suite), args.data or settings.training.data_dir)
