"""`make serve`: a default ranker in the registry, a private local Ray cluster, the Serve app deployed from a config.

    python -m ops.launch [--config configs/serve.local.yaml]

The champion is ensured in a spawned child process (ops/champion.py): training and the registry's imports cost
~190 MB that this process, alive as long as the service, would otherwise keep. Ctrl-C (or SIGTERM) stops the
cluster and everything it started. A later deploy that changes only a
`user_config` (`serve deploy`, or the retraining job after a promotion) reconfigures replicas in place.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

from ops.cluster import ClusterPorts, RayCluster, interrupt_on_term, load_config, serve_app, without_llm
from pipeline.errors import OpenSesameError
from pipeline.settings import PROJECT_ROOT, Settings, load_settings


def _champion(settings: Settings) -> None:
    """In a spawned child (see `ops.champion`): exit 2 with the reason when no champion can be had."""
    from ops.champion import ensure_champion

    try:
        ensure_champion(settings)
    except OpenSesameError as exc:  # e.g. no registered ranker and no training data: say what to do
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


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
    child = multiprocessing.get_context("spawn").Process(target=_champion, args=(settings,), name="champion")
    child.start()
    child.join()
    if child.exitcode != 0:
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
