"""Private local Ray clusters and the one way to stand the Serve app up on them: `make serve`, the demo and the
tests all go through `serve_app` (start a cluster, deploy a config, wait until RUNNING, stop on the way out).

The cluster is started with `ray start --head` in a session of its own, on explicit ports (Redis owns 6379, Ray's
default GCS port) and with token auth disabled (a private, loopback-only cluster). `ray start` returns once the
cluster is up (no `--block`: that would keep a 125 MB process waiting beside it); the session names the cluster
and stops it (ops/reaper.py). The app is deployed through the dashboard's REST API, exactly as `serve deploy` does.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from ops.reaper import stop_session
from pipeline.adapters.serve_api import deploy, wait_running

# A line of Ray's C++ logs at level ERROR or FATAL ("[2026-11-27 07:15:39,123 C 9366 9366] ...").
_RAY_ERROR = re.compile(r"^\[[^\]]* [EC] \d+ \d+\]")


@dataclass(frozen=True, slots=True)
class ClusterPorts:
    gcs: int = 6380
    dashboard: int = 8265
    client_server: int = 10001
    agent_listen: int = 52365
    agent_grpc: int = 52366
    runtime_env_agent: int = 52367
    metrics: int = 52368
    # Serve's HAProxy binds these on every interface besides the HTTP port (its defaults): a second HAProxy on the
    # machine, or one a killed node left behind, on the same ports makes a new one crash at start.
    haproxy_metrics: int = 9101
    haproxy_stats: int = 8404
    min_worker: int = 20000
    max_worker: int = 20999

    @classmethod
    def free(cls, worker_range: tuple[int, int] = (21000, 21999)) -> ClusterPorts:
        """Ports nobody listens on now: a second private cluster beside `make serve` (tests, the demo)."""
        return cls(*free_ports(9), *worker_range)

    def haproxy_env(self) -> dict[str, str]:
        """The cluster's HAProxy on its own ports (its sockets are per node already)."""
        return {"RAY_SERVE_HAPROXY_METRICS_PORT": str(self.haproxy_metrics),
                "RAY_SERVE_HAPROXY_STATS_PORT": str(self.haproxy_stats)}


class _RayProcess:
    """A `ray start` of ours (a head or a worker node): its own session, which outlives `ray start` itself and holds
    every process of the node, with a reaper that stops the session should this process die without doing it
    (see ops/reaper.py)."""

    _process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120, attempts: int = 3) -> None:
        """Start the node; one whose raylet dies while it starts is started again, as the kubelet restarts a pod's
        crashed container (on a busy machine the raylet gives up on its dashboard agent after a fixed 15 s and
        exits, ray#65983: in `make test` a node restarted under load failed twice in a row)."""
        for attempt in range(1, attempts + 1):
            failure = self._start_once(timeout_s)
            if failure is None:
                return
            if attempt < attempts:
                print(f"{self}: start {attempt} of {attempts} failed, starting it again\n{failure}", file=sys.stderr)
        raise RuntimeError(failure)

    def _start_once(self, timeout_s: float) -> str | None:
        """None once the node is up, else why it is not (the node stopped again)."""
        raise NotImplementedError

    def _spawn(self, args: list[str], work_dir: Path, ports: ClusterPorts, cwd: Path | None = None) -> Path:
        """Start `ray start <args>` (a node of the cluster on `ports`) logging to `work_dir`/ray-start.log; that
        log's path."""
        command = [str(Path(sys.executable).with_name("ray")), "start", "--node-ip-address=127.0.0.1",
                   *args, "--disable-usage-stats"]
        work_dir.mkdir(parents=True, exist_ok=True)
        log = work_dir / "ray-start.log"
        with log.open("wb") as out:
            self._process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env={**cluster_env(), **ports.haproxy_env()}, cwd=cwd,
                start_new_session=True,
            )
        subprocess.Popen([sys.executable, "-m", "ops.reaper", str(self._process.pid)], start_new_session=True)
        return log

    def stop(self, grace_s: float = 10.0) -> None:
        """Every process of the session, whatever state `ray start` is in; `grace_s=0` is a crash (SIGKILL at once).
        Ctrl-C and SIGTERM are held off meanwhile: a second one (a user pressing again, or `kill` sent to our
        whole process group) must not cut the clean-up short and leave the cluster running."""
        if self._process is None:
            return
        with _signals_held():
            stop_session(self._process.pid, grace_s)
            self._process.wait()


class RayCluster(_RayProcess):
    """A private single-node Ray cluster owned by this process."""

    def __init__(self, ports: ClusterPorts, temp_dir: Path, num_cpus: int | None = None) -> None:
        self.ports = ports
        self.temp_dir = temp_dir
        self.num_cpus = (os.cpu_count() or 2) if num_cpus is None else num_cpus

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dashboard}"

    def __str__(self) -> str:
        return f"head node on port {self.ports.gcs}"

    def _start_once(self, timeout_s: float) -> str | None:
        p = self.ports
        # Another cluster on these ports would answer our readiness checks: refuse instead of joining it.
        busy = [port for port in (p.gcs, p.dashboard, p.client_server) if _in_use(port)]
        if busy:
            raise RuntimeError(
                f"port(s) {busy} already in use: is another OpenSesame/Ray cluster running? Stop it first"
            )
        log = self._spawn([
            "--head",
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
        ], self.temp_dir, p)
        deadline = time.monotonic() + timeout_s
        while self._process.poll() in (None, 0) and time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.dashboard_url}/api/serve/applications/", timeout=2).status_code == 200:
                    return None
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        return (f"the Ray dashboard did not answer within {timeout_s:.0f} s (ray start: {self._process.returncode}); "
                f"see {log}\n{_tail(log)}")


class WorkerNode(_RayProcess):
    """A worker node joined to a private cluster with `ray start --address`, from a working directory of its own
    (no shared ./var), as a pod of a KubeRay worker group is: the stand-in for multi-node behaviour on one machine.
    Its custom resource `name` (1 unit) tells it apart in Ray's node list."""

    def __init__(self, head: RayCluster, name: str, work_dir: Path, num_cpus: int = 1,
                 worker_ports: tuple[int, int] = (22000, 22999)) -> None:
        self.head = head
        self.name = name
        self.work_dir = work_dir
        self.num_cpus = num_cpus
        self.worker_ports = worker_ports

    def __str__(self) -> str:
        return f"worker node {self.name}"

    def _start_once(self, timeout_s: float) -> str | None:
        ports = free_ports(6)
        log = self._spawn([
            f"--address=127.0.0.1:{self.head.ports.gcs}",
            f"--num-cpus={self.num_cpus}",
            f"--resources={json.dumps({self.name: 1})}",
            f"--node-manager-port={ports[0]}",
            f"--object-manager-port={ports[1]}",
            f"--dashboard-agent-listen-port={ports[2]}",
            f"--dashboard-agent-grpc-port={ports[3]}",
            f"--runtime-env-agent-port={ports[4]}",
            f"--metrics-export-port={ports[5]}",
            f"--min-worker-port={self.worker_ports[0]}",
            f"--max-worker-port={self.worker_ports[1]}",
        ], self.work_dir, self.head.ports, cwd=self.work_dir)
        deadline = time.monotonic() + timeout_s
        while self.node_id() is None:
            if self._process.poll() not in (None, 0) or time.monotonic() > deadline:
                self.stop()
                return (f"worker node {self.name} did not join the cluster within {timeout_s:.0f} s "
                        f"(ray start: {self._process.returncode}).\n{_tail(log)}{self._raylet_log()}")
            time.sleep(1)
        return None

    def _raylet_log(self) -> str:
        """The last-started raylet's errors and the end of its logs in the head's session (every node of this
        machine logs there, numbered in start order: raylet.out, raylet.1.out, ...): why a raylet that started did
        not register. Not the last modified: the nodes still alive write to theirs all the time."""

        def started(path: Path) -> int:
            number = path.name.split(".")[1]
            return int(number) if number.isdigit() else 0

        logs = self.head.temp_dir / "session_latest" / "logs"
        newest = max(logs.glob("raylet*.out"), key=started, default=None)
        if newest is None:
            return ""
        # A fatal check's message comes before its stack trace, which alone fills the tail.
        errors = [line for line in newest.read_text(errors="replace").splitlines() if _RAY_ERROR.match(line)]
        return "".join(f"{line}\n" for line in errors[-10:]) + _tail(newest) + _tail(newest.with_suffix(".err"))

    def node_id(self) -> str | None:
        """Ray's id of this node while it is alive."""
        from ray.util.state import list_nodes

        alive = list_nodes(
            address=self.head.dashboard_url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False
        )
        return next((node.node_id for node in alive if self.name in (node.resources_total or {})), None)


@contextmanager
def _signals_held() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers, and only it receives the signals
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupt_on_term() -> None:
    """SIGTERM ends this process as Ctrl-C does (KeyboardInterrupt), so its clusters stop on the way out."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def free_ports(n: int) -> list[int]:
    """`n` distinct ports nobody listens on, below the kernel's ephemeral range (and above our worker-port ranges,
    20000-22999, and the Ingress replicas', 19000-19999). A port the kernel picks (bind to 0) may become the source
    port of any outgoing connection before the server meant for it binds it, and a load test opens hundreds: a
    node restarted mid-load then fails with "address already in use". Below that range only an explicit bind takes
    a port."""
    first = 23000
    ephemeral_start = _ephemeral_start()
    pool = range(first, ephemeral_start if ephemeral_start > first + 1000 else 32768)
    held: list[socket.socket] = []  # open until all are found, so that no port is handed out twice
    try:
        for port in random.sample(pool, len(pool)):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            if len(held) == n:
                return [int(s.getsockname()[1]) for s in held]
    finally:
        for sock in held:
            sock.close()
    raise RuntimeError(f"fewer than {n} free ports in {pool.start}-{pool.stop - 1}")


def free_port() -> int:
    return free_ports(1)[0]


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; elsewhere a guess


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path} (last {len(text)} lines)\n" + "\n".join(text) + "\n"


def _in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def cluster_env() -> dict[str, str]:
    # Ray 2.60 enables token auth by default; this cluster binds to loopback only and is ours alone.
    # Ray starts workers at nice 15; replicas are the service here, and on 2 cores that cost ~2 ms per request.
    # A crashed node is declared dead after 3 missed 1 s health checks (Ray's default: 5 x 3 s), so requests held
    # by replicas on it fail over in seconds rather than ~15 s.
    return {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_worker_niceness": "0",
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
        # HTTP goes from HAProxy (shipped with ray[serve]) straight to the Ingress replicas, which serve it
        # themselves: no Python proxy actor relaying each request (2 cores: sequential /predict p50 23 -> 17 ms,
        # 16 users 67 -> 102 req/s). A stopped Ingress replica drains for 5 s, not 30, before it exits: HAProxy
        # here is reconfigured by Serve's controller within a second, not by a cloud load balancer.
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
        # HAProxy's start can take longer than Serve's 5 s ready check on a busy machine: the controller then kills
        # the proxy as unhealthy and the `serve deploy` waiting on it is refused with a 500.
        "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
        # The Ingress replicas bind their own HTTP and gRPC ports, handed out per node from these ranges (Serve's
        # defaults, 30000-31000 and 40000-41000, lie among the ports free_ports hands out and the kernel's
        # ephemeral ones): below the worker ports, where nothing else of ours binds.
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "19000",
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": "19499",
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": "19500",
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": "19999",
        # glibc gives each thread that allocates concurrently an arena of its own, up to 8 per core, and each keeps
        # its peak: two per process (the Ingress after a load test 216 -> 159 MB; the whole stack 2.81 -> 2.75 GB).
        "MALLOC_ARENA_MAX": "2",
        # Where the dashboard's metrics views query: `opensesame monitor`'s Prometheus, unless told otherwise.
        "RAY_PROMETHEUS_HOST": os.environ.get("RAY_PROMETHEUS_HOST", "http://127.0.0.1:9090"),
    }


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
    if not llm:
        config = without_llm(config)
    next(d for d in config["applications"][0]["deployments"] if d["name"] == "Ranker")["user_config"] = {
        "model_uri": model_uri
    }
    return config


def without_llm(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Serve config without the vLLM CandidateGenerator (the Ranker ranks without it)."""
    config = copy.deepcopy(config)
    app = config["applications"][0]
    app["args"]["llm"] = False
    app["deployments"] = [d for d in app["deployments"] if d["name"] != "CandidateGenerator"]
    return config


@contextmanager
def serve_app(
    config: dict[str, Any], cluster: RayCluster, nodes: Sequence[WorkerNode] = (), answering: str | None = None
) -> Iterator[RayCluster]:
    """Start `cluster` (and worker `nodes` joining it), deploy `config` and wait until the app is RUNNING, or with
    `answering` (a /readyz URL) until that answers (`wait_running`); the nodes and the cluster stop when the block
    ends, however it ends."""
    cluster.start()
    try:
        for node in nodes:
            node.start()
        submitted = time.time()
        deploy(cluster.dashboard_url, config)
        wait_running(cluster.dashboard_url, since=submitted, answering=answering)
        yield cluster
    finally:
        for node in nodes:
            node.stop()
        cluster.stop()
        _released(config.get("http_options", {}).get("port"))


def _released(port: int | None, timeout_s: float = 30.0) -> None:
    """Wait for the app's HTTP port to be let go: Serve's HAProxy can outlive the session's processes by a moment,
    and the service started again on that port then fails to bind it ("Address already in use")."""
    deadline = time.monotonic() + timeout_s
    while port is not None and _in_use(port) and time.monotonic() < deadline:
        time.sleep(0.2)
