"""The services around the Serve app going away, on a single-node cluster with MLflow as a real server (as the
KubeRay manifests run it) and a real Redis:

- the whole service stopped and started again with labels in flight: every label answered 202 is in the label log
  exactly once. Redis (the feedback stream) outlives the service, as its own pod does on Kubernetes; the Ray
  cluster with every replica, the LearningLoop's label-log writer included, is stopped as a pod is (SIGTERM to the
  process group, then SIGKILL) while clients are still labelling, just after the writer, frozen while 50 labels
  were accepted, was killed holding labels it had not written (read and unacknowledged, or not read yet);
- the MLflow server killed while the Ranker checks its alias: the old model keeps serving with no failed
  request, readiness says why, and once the server is back the Ranker loads the version the alias names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pyarrow.parquet as pq
import pytest

from ops.cluster import ClusterPorts, RayCluster, free_port, load_config, serve_app, variant
from ops.load import RequestLoop, wait_until_ok
from pipeline.adapters import registry
from pipeline.adapters.label_log import LOG_VERSION
from pipeline.settings import PROJECT_ROOT, RegistrySettings
from tests.support import FIXTURES, PACE_S, RedisServer, poll

pytestmark = pytest.mark.slow

BILLING = (FIXTURES / "billing_oas30.yaml").read_text()
CLIENTS = 4


class MlflowServer:
    """`mlflow server` on a free loopback port over a sqlite store and a local artifact root, which a test may
    kill (SIGKILL, as a lost pod) and start again on the same port and store."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.settings = RegistrySettings(tracking_uri=f"http://127.0.0.1:{self.port}",
                                         artifact_root=(work / "art").as_uri())
        self.start()

    def start(self) -> None:
        mlflow = str(Path(sys.executable).with_name("mlflow"))
        self.process = subprocess.Popen(
            [mlflow, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.work / 'mlflow.db'}",
             "--default-artifact-root", self.settings.artifact_root],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # as k8s/base/mlflow.yaml runs it
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        # Restarted beside a loaded Serve app on 2 cores, MLflow's own start (14 s idle) has taken over 60 s.
        wait_until_ok(f"{self.settings.tracking_uri}/health", timeout_s=180)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)  # the server and its workers
        self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="module")
def mlflow_server() -> Iterator[MlflowServer]:
    server = MlflowServer(Path(tempfile.mkdtemp(prefix="os-mlf-", dir="/tmp")))
    yield server
    if server.process is not None:
        server.kill()


def _settings(work: Path, tiny_settings: Any, redis: RedisServer, reg: RegistrySettings, **learning: Any
              ) -> dict[str, Any]:
    return {
        "cache": {"redis_url": redis.url, "key_prefix": f"out{time.time_ns()}:", "retry_after_s": 0.5},
        "registry": reg.model_dump(),
        "embedder": tiny_settings.embedder.model_dump(mode="json"),  # the tiny ranker's
        "feedback": {"stream": f"outages:{time.time_ns()}", "spool_path": str(work / "spool.jsonl")},
        "learning": {"log_uri": str(work / "labels"), "base_data": tiny_settings.learning.base_data,
                     "writer_block_ms": 200, "retrain_after_labels": 0, "worker_cpus": 0.4, **learning},
    }


def _ready(base: str) -> dict[str, Any]:
    return httpx.get(base + "/readyz", timeout=10).json()


def _label_forever(base: str, spec_id: str, client: int, accepted: list[str], stop: threading.Event) -> None:
    """Predict, then accept the top prediction, until stopped; the ids of the labels answered 202."""
    with httpx.Client(timeout=10) as http:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                predicted = http.post(base + "/predict", json={
                    "user_id": f"restart-{client}-{n}", "spec_id": spec_id,
                    "events": [{"endpoint": f"GET /v1/invoices/in_{n}"}]})
                if predicted.status_code != 200:
                    continue
                prediction_id = predicted.json()["prediction_id"]
                labelled = http.post(base + "/feedback", json={"prediction_id": prediction_id, "accepted_rank": 1})
                if labelled.status_code == 202:
                    accepted.append(prediction_id)
            except httpx.HTTPError:  # the service is going away under us: nothing was accepted
                time.sleep(0.05)


def _writer_pid(cluster: RayCluster) -> int:
    """The process of the LearningLoop replica: the label log's single writer."""
    from ray.util.state import list_actors

    (replica,) = list_actors(
        address=cluster.dashboard_url,
        filters=[("class_name", "=", "ServeReplica:opensesame:LearningLoop"), ("state", "=", "ALIVE")],
        raise_on_missing_output=False,
    )
    return int(replica.pid)


def _logged(log_uri: str) -> list[str]:
    """Every prediction id in the log's files, duplicates included (the log's readers would hide them)."""
    directory = Path(log_uri) / LOG_VERSION
    if not any(directory.rglob("*.parquet")):
        return []
    return pq.read_table(directory, columns=["prediction_id"], partitioning=None)["prediction_id"].to_pylist()


def test_a_whole_service_restart_keeps_every_accepted_label_exactly_once(
    tiny_settings, tiny_model, redis_server: RedisServer, mlflow_server: MlflowServer
) -> None:
    work = Path(tempfile.mkdtemp(prefix="os-rst-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    reg = mlflow_server.settings
    registry.promote(registry.register(tiny_settings.paths.model_dir, reg, run_name="restart"), reg.alias, reg)
    settings = _settings(work, tiny_settings, redis_server, reg)
    log_uri = settings["learning"]["log_uri"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = variant(load_config(PROJECT_ROOT / "configs" / "serve.local.yaml"), port, settings,
                     f"models:/{reg.model_name}@{reg.alias}", llm=False)
    accepted: list[str] = []
    stop = threading.Event()
    with serve_app(config, RayCluster(ClusterPorts.free(), work / "ray-1")) as cluster:
        spec_id = httpx.post(base + "/specs", json={"spec": BILLING}, timeout=120).json()["spec_id"]
        clients = [threading.Thread(target=_label_forever, args=(base, spec_id, c, accepted, stop), daemon=True)
                   for c in range(CLIENTS)]
        for thread in clients:
            thread.start()
        time.sleep(4)
        # The label-log writer frozen (SIGSTOP, as a node stalls) while the clients go on labelling: the labels
        # accepted from now on are in the stream, not yet in the log, when the service stops.
        writer = _writer_pid(cluster)
        os.kill(writer, signal.SIGSTOP)
        # The writer is frozen, not merely signalled.
        poll(lambda: psutil.Process(writer).status() == psutil.STATUS_STOPPED, timeout_s=5)
        # Labels accepted after the freeze, counted rather than a fixed wait: the clients may accept none for
        # seconds, and the stop would then find every accepted label already written.
        frozen_at = len(accepted)
        poll(lambda: len(accepted) >= frozen_at + 50, timeout_s=60)
        # The frozen writer dies with its node, its labels unwritten. Left frozen into the stop it would not stay
        # so: when the raylet exits, the kernel continues the stopped processes of the now orphaned process group
        # (SIGHUP, SIGCONT), and the writer sometimes drained the stream before its SIGTERM was handled.
        os.kill(writer, signal.SIGKILL)
        # Leaving the block stops the whole service while the clients are still labelling.
    stop.set()
    for thread in clients:
        thread.join()
    written_before = len(_logged(log_uri))
    assert written_before < len(accepted), "no accepted label was left unwritten at the stop"

    with serve_app(config, RayCluster(ClusterPorts.free(), work / "ray-2")):
        deadline = time.monotonic() + 90
        while not set(accepted) <= set(_logged(log_uri)):
            assert time.monotonic() < deadline, f"{len(set(accepted) - set(_logged(log_uri)))} accepted labels lost"
            time.sleep(0.5)
        after = httpx.post(base + "/predict", json={"user_id": "after", "spec_id": spec_id}, timeout=60)
        assert after.status_code == 200, after.text  # the spec survived in Redis: no re-registration needed
    logged = _logged(log_uri)
    print(f"whole-service restart: {len(accepted)} labels accepted, {written_before} in the log at the stop, "
          f"{len(logged) - written_before} written after the restart")
    assert sorted(p for p in logged if p in set(accepted)) == sorted(accepted)  # each exactly once
    assert len(logged) == len(set(logged))  # and nothing else twice


def test_mlflow_unreachable_during_a_reload_keeps_the_old_model_serving_until_it_is_back(
    tiny_settings, tiny_model, redis_server: RedisServer, mlflow_server: MlflowServer
) -> None:
    work = Path(tempfile.mkdtemp(prefix="os-mlo-", dir="/tmp"))
    reg = mlflow_server.settings
    old, new = (registry.register(tiny_settings.paths.model_dir, reg, run_name=f"outage-{i}") for i in (1, 2))
    registry.promote(old, reg.alias, reg)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = variant(load_config(PROJECT_ROOT / "configs" / "serve.local.yaml"), port,
                     _settings(work, tiny_settings, redis_server, reg, reload_check_s=1),
                     f"models:/{reg.model_name}@{reg.alias}", llm=False)
    alias_uri = f"models:/{reg.model_name}@{reg.alias}"
    with serve_app(config, RayCluster(ClusterPorts.free(), work / "ray")):
        spec_id = httpx.post(base + "/specs", json={"spec": BILLING}, timeout=120).json()["spec_id"]
        body = {"spec_id": spec_id, "events": [{"endpoint": "GET /v1/invoices/in_1"}], "prompt": "pay it"}
        with RequestLoop(base + "/predict", lambda c, n: {**body, "user_id": f"mlo-{c}-{n}"}, clients=4,
                         pause_s=PACE_S) as loop:
            poll(lambda: _ready(base)["model_version"] == old.label, timeout_s=60)
            killed = time.time()
            mlflow_server.kill()
            # Readiness says why within a check or two (not after MLflow's own minutes of retries).
            ready = poll(lambda: (r := _ready(base))["model_reload_error"] and r, timeout_s=30)
            said = time.time() - killed
            assert ready["ready"] is True and ready["model_version"] == old.label
            assert f"cannot check or load {alias_uri}, serving {old.label}" in ready["model_reload_error"]
            time.sleep(3)  # the old model goes on serving through further failed checks
            mlflow_server.start()
            back = time.time()
            registry.promote(new, reg.alias, reg)  # the server answers again, its alias naming another version
            recovered = poll(lambda: (r := _ready(base))["model_version"] == new.label and r, timeout_s=60)
            assert recovered["model_reload_error"] is None
            poll(lambda: loop.seen(new.label), timeout_s=15)
        report = loop.report(new.label, since=back)
    print(f"MLflow killed under 4 closed-loop clients: readiness said why after {said:.1f} s; "
          f"{report['requests']} predictions, {report['failed']} failed, p99 {report.get('p99_ms')} ms; "
          f"every answer named {new.label} {report['last_old_version_s']} s after the server was back")
    assert report["failed"] == 0, report
