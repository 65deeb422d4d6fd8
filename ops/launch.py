"""`make serve`: a default ranker in the registry, a private local Ray cluster, the Serve app deployed from a config.

    python -m ops.launch [--config configs/serve.local.yaml]

Ctrl-C (or SIGTERM) stops the cluster and everything it started. A later deploy that changes only a
`user_config` (`serve deploy`, or the retraining job after a promotion) reconfigures replicas in place.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ops.cluster import ClusterPorts, RayCluster, interrupt_on_term, load_config, serve_app, without_llm
from pipeline.adapters import registry
from pipeline.adapters.minilm import embedder_name
from pipeline.errors import OpenSesameError
from pipeline.ranking.embedding import STOCK_EMBEDDER
from pipeline.ranking.features import SCHEMA_VERSION
from pipeline.ranking.model import model_signature
from pipeline.settings import PROJECT_ROOT, Settings, load_settings
from train.embedder_tuning import ensure_embedder
from train.run import train


def ensure_champion(settings: Settings, log: Any = print) -> str:
    """The registry's champion ranker; registers `paths.model_dir` or trains a default model when there is none,
    or when the champion was trained on another feature schema than this code computes (an upgrade) or on
    another embedder than the configured one."""
    ensure_embedder(settings, log)
    wanted = (SCHEMA_VERSION, embedder_name(settings.embedder.model_dir))
    current = registry.champion(settings.registry)
    if current is not None:
        tags = registry.version_tags(current, settings.registry)
        # Versions registered before the embedder tag were all trained on the packaged MiniLM.
        found = (tags.get(registry.SCHEMA_TAG, "unknown"), tags.get(registry.EMBEDDER_TAG, STOCK_EMBEDDER))
        if found == wanted:
            return current.label
        log(f"champion {current.label} has feature schema {found[0]} and embedder {found[1]}; "
            f"this service computes {wanted[0]} with {wanted[1]}")
    model_dir = settings.paths.model_dir
    if model_signature(model_dir) == wanted:
        report_path = model_dir / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    else:
        log(f"no ranker of this schema and embedder in the registry or in {model_dir}: training the default one "
            "(about 10 minutes)")
        _, report = train(settings, model_dir, log=log)
    version = registry.register(
        model_dir,
        settings.registry,
        metrics=registry.report_metrics(report),
        alias=settings.registry.alias,
        run_name="default-ranker",
    )
    log(f"registered {version.label} as @{settings.registry.alias}")
    return version.label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "configs" / "serve.local.yaml")
    parser.add_argument("--no-llm", action="store_true", help="deploy without the vLLM CandidateGenerator")
    args = parser.parse_args(argv)
    started = time.monotonic()
    config = load_config(args.config)
    if args.no_llm:
        config = without_llm(config)
    settings = load_settings(overrides=config["applications"][0].get("args", {}).get("settings", {}))
    try:
        ensure_champion(settings)
    except OpenSesameError as exc:  # e.g. no registered ranker and no training data: say what to do
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with serve_app(config, RayCluster(ClusterPorts(), settings.paths.var_dir / "ray")) as cluster:
            http = config.get("http_options", {})
            base = f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"
            print(
                f"\nOpenSesame is up in {time.monotonic() - started:.0f} s\n"
                f"  API        {base}/predict  {base}/feedback  {base}/specs\n"
                f"  docs       {base}/docs\n"
                f"  dashboard  {cluster.dashboard_url}\n"
                f"  metrics    http://127.0.0.1:{cluster.ports.metrics}/metrics (Prometheus text format, this node)\n"
                "Ctrl-C stops it.",
                flush=True,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped the Ray cluster", flush=True)
    return 0


if __name__ == "__main__":
    interrupt_on_term()  # `kill` stops the cluster as cleanly as Ctrl-C
    sys.exit(main())
