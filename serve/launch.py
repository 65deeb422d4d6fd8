"""`make serve`: a default ranker in the registry, a private local Ray cluster, the Serve app deployed from a config.

    python -m serve.launch [--config configs/serve.local.yaml]

The cluster is started with `ray start --head --block` as our own child process, on explicit ports (Redis owns
6379, Ray's default GCS port) and with token auth disabled (a private, loopback-only cluster). The app is
deployed through the dashboard's REST API, exactly as `serve deploy` does, so a later deploy that changes only
a `user_config` reconfigures replicas in place. Ctrl-C stops the cluster and everything it started.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from pipeline.errors import OpenSesameError
from pipeline.settings import PROJECT_ROOT, Settings, load_settings

APP_NAME = "opensesame"


@dataclass(frozen=True, slots=True)
class ClusterPorts:
    gcs: int = 6380
    dashboard: int = 8265
    client_server: int = 10001
    agent_listen: int = 52365
    agent_grpc: int = 52366
    runtime_env_agent: int = 52367
    metrics: int = 52368
    min_worker: int = 20000
    max_worker: int = 20999

    @classmethod
    def free(cls, worker_range: tuple[int, int] = (21000, 21999)) -> ClusterPorts:
        """Ports nobody listens on now: a second private cluster beside `make serve` (tests, the demo)."""
        return cls(*(free_port() for _ in range(7)), *worker_range)


class RayCluster:
    """A private single-node Ray cluster owned by this process."""

    def __init__(self, ports: ClusterPorts, temp_dir: Path, num_cpus: int | None = None) -> None:
        self.ports = ports
        self.temp_dir = temp_dir
        self.num_cpus = num_cpus or os.cpu_count() or 2
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dashboard}"

    def start(self, timeout_s: float = 120) -> None:
        p = self.ports
        # Another cluster on these ports would answer our readiness checks: refuse instead of joining it.
        busy = [port for port in (p.gcs, p.dashboard, p.client_server) if _in_use(port)]
        if busy:
            raise RuntimeError(
                f"port(s) {busy} already in use: is another OpenSesame/Ray cluster running? Stop it first"
            )
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={p.gcs}",
            f"--num-cpus={self.num_cpus}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={p.dashboard}",
            f"--ray-client-server-port={p.client_server}",
            f"--dashboard-agent-listen-port={p.agent_listen}",
            f"--dashboard-agent-grpc-port={p.agent_grpc}",
            f"--runtime-env-agent-port={p.runtime_env_agent}",
            f"--metrics-export-port={p.metrics}",
            f"--min-worker-port={p.min_worker}",
            f"--max-worker-port={p.max_worker}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        log = (self.temp_dir / "ray-start.log").open("wb")
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=cluster_env(), start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self._process.returncode}; see {log.name}")
            try:
                if httpx.get(f"{self.dashboard_url}/api/serve/applications/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"the Ray dashboard did not answer within {timeout_s:.0f} s; see {log.name}")

    def stop(self) -> None:
        """SIGTERM to `ray start --block`, which stops the cluster's processes itself; after 10 s (Serve's
        proxy drains for up to 30 s, nothing we need) SIGKILL to whatever of its process group is left."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def cluster_env() -> dict[str, str]:
    # Ray 2.60 enables token auth by default; this cluster binds to loopback only and is ours alone.
    # Ray starts workers at nice 15; replicas are the service here, and on 2 cores that cost ~2 ms per request.
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"}


def load_config(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def variant(
    config: dict[str, Any], port: int, settings: dict[str, Any], model_uri: str, llm: bool = True
) -> dict[str, Any]:
    """A copy of a Serve config on another port, with these settings (replacing the config's), this Ranker model
    and optionally without the LLM generator: a second deployment beside `make serve` (tests, the demo)."""
    config = copy.deepcopy(config)
    config["http_options"]["port"] = port
    app = config["applications"][0]
    app["args"]["settings"] = settings
    app["args"]["llm"] = llm
    if not llm:
        app["deployments"] = [d for d in app["deployments"] if d["name"] != "CandidateGenerator"]
    next(d for d in app["deployments"] if d["name"] == "Ranker")["user_config"] = {"model_uri": model_uri}
    return config


def deploy(dashboard_url: str, config: dict[str, Any]) -> None:
    """What `serve deploy` does: PUT the declarative config; Serve reconciles towards it."""
    response = httpx.put(f"{dashboard_url}/api/serve/applications/", json=config, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"serve deploy refused the config ({response.status_code}): {response.text[:2000]}")


def app_status(dashboard_url: str) -> dict[str, Any]:
    status = httpx.get(f"{dashboard_url}/api/serve/applications/", timeout=10).json()
    return status.get("applications", {}).get(APP_NAME, {})


def wait_running(dashboard_url: str, timeout_s: float = 300, since: float | None = None) -> None:
    """Until the app is RUNNING (after the deploy submitted at wall time `since`); a failed deploy raises."""
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = app_status(dashboard_url)
        fresh = since is None or state.get("last_deployed_time_s", 0) >= since
        if fresh and state.get("status") == "RUNNING":
            return
        if fresh and state.get("status") == "DEPLOY_FAILED":
            raise RuntimeError(f"deploy failed: {_messages(state)}")
        time.sleep(1)
    raise TimeoutError(f"app not RUNNING after {timeout_s:.0f} s: {state.get('status')} {_messages(state)}")


def reload_ranker(dashboard_url: str, version: str, timeout_s: float = 300) -> dict[str, Any]:
    """After a promotion: redeploy the running app's own config with the Ranker's `user_config.version` set to
    the new champion. Only a `user_config` changes, so Serve reconfigures the replicas in place (no restart)."""
    started = time.monotonic()
    try:
        details = httpx.get(f"{dashboard_url}/api/serve/applications/", timeout=10).json()
    except httpx.HTTPError as exc:
        return {"reloaded": False, "why": f"no Ray dashboard at {dashboard_url} ({exc}); replicas pick the new "
                                          "champion up at their next alias check"}
    apps = details.get("applications", {})
    if APP_NAME not in apps or not apps[APP_NAME].get("deployed_app_config"):
        return {"reloaded": False, "why": f"no Serve app {APP_NAME!r} deployed at {dashboard_url}"}
    configs = [app["deployed_app_config"] for app in apps.values() if app.get("deployed_app_config")]
    ours = next(c for c in configs if c["name"] == APP_NAME)
    ranker = next(d for d in ours.get("deployments", []) if d["name"] == "Ranker")
    ranker["user_config"] = {**(ranker.get("user_config") or {}), "version": version}
    config = {"proxy_location": details.get("proxy_location"), "http_options": details.get("http_options"),
              "applications": configs}
    submitted = time.time()
    deploy(dashboard_url, {k: v for k, v in config.items() if v is not None})
    wait_running(dashboard_url, timeout_s=timeout_s, since=submitted)
    return {"reloaded": True, "seconds": round(time.monotonic() - started, 2)}


def _messages(state: dict[str, Any]) -> str:
    parts = [state.get("message", "")]
    for name, deployment in state.get("deployments", {}).items():
        if deployment.get("message"):
            parts.append(f"{name}: {deployment['message']}")
    return " | ".join(p for p in parts if p)[:4000]


def ensure_champion(settings: Settings, log: Any = print) -> str:
    """The registry's champion ranker; registers `paths.model_dir` or trains a default model when there is none,
    or when the champion was trained on another feature schema than this code computes (an upgrade)."""
    from pipeline import registry
    from pipeline.features import SCHEMA_VERSION
    from pipeline.ranker import model_schema

    current = registry.champion(settings.registry)
    if current is not None:
        schema = registry.version_tags(current, settings.registry).get(registry.SCHEMA_TAG)
        if schema == SCHEMA_VERSION:
            return current.label
        log(f"champion {current.label} has feature schema {schema or 'unknown'}, this code computes {SCHEMA_VERSION}")
    model_dir = settings.paths.model_dir
    if model_schema(model_dir) == SCHEMA_VERSION:
        report_path = model_dir / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    else:
        from train.run import train

        log(f"no ranker of this schema in the registry or in {model_dir}: training the default one (about 5 minutes)")
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
    parser = argparse.ArgumentParser(prog="python -m serve.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "configs" / "serve.local.yaml")
    args = parser.parse_args(argv)
    started = time.monotonic()
    config = load_config(args.config)
    settings = load_settings(overrides=config["applications"][0].get("args", {}).get("settings", {}))
    try:
        ensure_champion(settings)
    except OpenSesameError as exc:  # e.g. no registered ranker and no training data: say what to do
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cluster = RayCluster(ClusterPorts(), settings.paths.var_dir / "ray")
    cluster.start()
    try:
        submitted = time.time()
        deploy(cluster.dashboard_url, config)
        wait_running(cluster.dashboard_url, since=submitted)
        http = config.get("http_options", {})
        base = f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"
        print(
            f"\nOpenSesame is up in {time.monotonic() - started:.0f} s\n"
            f"  API        {base}/predict  {base}/feedback  {base}/specs\n"
            f"  docs       {base}/docs\n"
            f"  dashboard  {cluster.dashboard_url}\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the Ray cluster ...", flush=True)
        cluster.stop()
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the cluster as cleanly as Ctrl-C
    sys.exit(main())
