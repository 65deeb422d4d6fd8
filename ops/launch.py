"""`make serve`: serve at once, improve in the background. A ranker in the registry (a cold-start one trained in a
minute or two when there is none), a private local Ray cluster, the Serve app deployed from a config; then,
while it serves, the full preparation as a Ray job that replaces the cold-start ranker through the gate.

    python -m ops.launch [--config configs/serve.local.yaml] [--no-llm]

The champion is ensured in a spawned child process (ops/champion.py): training and the registry's imports cost
~190 MB that this process, alive as long as the service, would otherwise keep. Ctrl-C (or SIGTERM) stops the
cluster and everything it started, the job included. A later deploy that changes only a `user_config` (`serve
deploy`, or a job after a promotion) reconfigures replicas in place.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx

from ops.champion import Champion
from ops.cluster import ClusterPorts, RayCluster, interrupt_on_term, load_config, serve_app, without_llm
from ops.status import follow_job
from pipeline.adapters.serve_api import app_status, wait_running
from pipeline.errors import OpenSesameError
from pipeline.settings import PROJECT_ROOT, Settings, load_settings
from serve.jobs import ModelJobs


def _champion(settings: Settings) -> Champion:
    """In a spawned child (see `ops.champion`)."""
    from ops.champion import ensure_champion

    return ensure_champion(settings, cold_start=True)


def _prepare_in_background(settings: Settings, champion: Champion, started: float) -> None:
    """Submits the full preparation and follows it; the service serves on whatever happens to the job."""
    try:
        job_id = ModelJobs(settings).submit("make serve", kind="prepare")
        print(f"\n{champion.label} is a cold-start ranker. The full model (the embedder tuned, the ranker trained on "
              f"it) is being prepared in Ray job {job_id}\n(Jobs in the dashboard; `opensesame status`); it "
              "replaces the cold-start one through the gate, without a failed request.", flush=True)
        follow_job(settings, job_id, started, lambda line: print(line, flush=True))
    except (OSError, RuntimeError, OpenSesameError) as exc:  # the job API away, or a job already running
        print(f"the full preparation could not be started or followed ({type(exc).__name__}: {exc}); still "
              "serving the cold-start ranker: see `opensesame status`", flush=True)


def _report_running(dashboard_url: str, started: float) -> None:
    """Says when the deployments still starting at the first answer have joined (the vLLM generator takes longest:
    until it is up, a prediction that asks it ranks without it once its LLM budget has passed), or that one failed."""
    print("(not every deployment is up yet: predictions rank without the vLLM generator until it joins)", flush=True)
    try:
        wait_running(dashboard_url)
        print(f"every deployment is up after {time.monotonic() - started:.0f} s", flush=True)
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        print(f"not every deployment came up ({exc}); the ranker serves without what failed", flush=True)


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
        # Not a multiprocessing.Pool: its daemonic worker could not fork the training's own workers.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            champion = child.submit(_champion, settings).result()
    except OpenSesameError as exc:  # e.g. no registered ranker and no training data: say what to do
        print(f"error: {exc}", file=sys.stderr)
        return 2
    http = config.get("http_options", {})
    base = f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"
    try:
        cluster = RayCluster(ClusterPorts(), settings.paths.var_dir / "ray")
        with serve_app(config, cluster, answering=f"{base}/readyz"):
            print(
                f"\nOpenSesame is up in {time.monotonic() - started:.0f} s, serving {champion.label}\n"
                f"  API        {base}/predict  {base}/feedback  {base}/specs\n"
                f"  docs       {base}/docs\n"
                f"  dashboard  {cluster.dashboard_url}\n"
                f"  metrics    http://127.0.0.1:{cluster.ports.metrics}/metrics (Prometheus text format, this node)\n"
                "Ctrl-C stops it.",
                flush=True,
            )
            if app_status(cluster.dashboard_url).get("status") != "RUNNING":
                # The preparation job waits too: started beside the generator, it slowed both (docs/decisions.md).
                _report_running(cluster.dashboard_url, started)
            if not champion.complete:
                _prepare_in_background(settings, champion, started)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped the Ray cluster", flush=True)
    return 0


if __name__ == "__main__":
    interrupt_on_term()  # `kill` stops the cluster as cleanly as Ctrl-C
    sys.exit(main())
