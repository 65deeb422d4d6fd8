"""Faults survived on a multi-node Ray cluster on this machine, the stand-in for KubeRay's pods: a head with no
CPUs and two worker nodes joined with `ray start --address` from working directories of their own, the app
deployed from the prod config (configs/serve.prod.yaml, the CPU flavour) scaled down to two replicas of each
stateless deployment, one per node, a real Redis, and 16 closed-loop clients predicting through each fault. Last,
a retraining job submitted by the LearningLoop to the head's job API, Ray Train writing to shared storage, and the
promoted model served by every replica, under four paced clients (the job needs the cores).

Each test prints what the clients saw: requests, failures, the window in which they failed, p99. The only
failures are requests in flight on a replica that dies, and on connections HAProxy closes when it reloads (the set
of Ingress replicas changed): HAProxy answers those on a dead Ingress replica with 500, a dead replica behind the
Ingress is a 503 with Retry-After."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.cluster import ClusterPorts, RayCluster, WorkerNode, free_port, load_config, serve_app, variant
from ops.load import RequestLoop, Sample, outcome
from pipeline.adapters import registry
from pipeline.adapters.serve_api import app_status
from pipeline.learning.records import FeedbackRecord
from pipeline.settings import PROJECT_ROOT, RegistrySettings
from tests.support import FIXTURES, PACE_S, RedisServer

pytestmark = pytest.mark.slow

BILLING = (FIXTURES / "billing_oas30.yaml").read_text()
SPREAD = ("Ingress", "SpecStore", "Embedder", "Ranker")  # two replicas each, one per worker node
STREAM = "faults:feedback"
ADMIN_TOKEN = "faults-admin-token"


@dataclass
class Stand:
    base: str
    head: RayCluster
    nodes: dict[str, WorkerNode]
    redis: RedisServer
    spec_id: str
    log_uri: str
    shared: Path  # the stand-in for the shared volume every node mounts
    registry: RegistrySettings

    def load(self, clients: int = 16, pause_s: float = 0.0) -> RequestLoop:
        def body(client: int, n: int) -> dict[str, Any]:
            return {"user_id": f"load-{client}", "spec_id": self.spec_id, "k": 3,
                    "events": [{"endpoint": f"GET /v1/invoices/in_{n}"}]}

        return RequestLoop(self.base + "/predict", body, clients=clients, pause_s=pause_s)

    def predictions(self, n: int) -> list[str]:
        """`n` predictions, each on a connection of its own: HAProxy spreads them over both Ingress replicas (one
        kept-alive connection would stay on one)."""
        return [
            httpx.post(self.base + "/predict", json={"user_id": f"fb-{i}", "spec_id": self.spec_id}, timeout=60).json()[
                "prediction_id"
            ]
            for i in range(n)
        ]

    def replicas(self, deployment: str) -> list[Any]:
        from ray.util.state import list_actors

        return list_actors(
            address=self.head.dashboard_url,
            filters=[("class_name", "=", f"ServeReplica:opensesame:{deployment}"), ("state", "=", "ALIVE")],
            raise_on_missing_output=False,
        )


@pytest.fixture(scope="module")
def fault_redis(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own, append-only and fsynced on every write (as a production Redis keeps
    the feedback stream), so a test may kill it; the shared one where no redis-server binary is installed."""
    if not redis_server.owned:
        yield redis_server
        return
    server = RedisServer(durable_dir=tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stand(tiny_settings, tiny_model, gate_cases: Path, fault_redis: RedisServer) -> Iterator[Stand]:
    work = Path(tempfile.mkdtemp(prefix="os-flt-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    reg = RegistrySettings(tracking_uri=f"sqlite:///{work / 'mlflow.db'}", artifact_root=(work / "art").as_uri())
    started = time.monotonic()
    version = registry.register(tiny_settings.paths.model_dir, reg, run_name="faults")
    registry.promote(version, reg.alias, reg)
    head = RayCluster(ClusterPorts.free(), work / "head", num_cpus=0)
    # Two logical CPUs per node: the replicas, then a retraining job (driver, Ray Train worker, Ray Data's reads).
    nodes = {
        name: WorkerNode(head, name, work / name, num_cpus=2, worker_ports=ports)
        for name, ports in (("node_a", (22000, 22499)), ("node_b", (22500, 22999)))
    }
    shared = work / "shared"
    settings = {
        "cache": {"redis_url": fault_redis.url, "key_prefix": f"flt{time.time_ns()}:", "retry_after_s": 0.5},
        "registry": reg.model_dump(),
        "embedder": tiny_settings.embedder.model_dump(mode="json"),  # the tiny ranker's
        "feedback": {"stream": STREAM, "spool_path": str(shared / "spool" / "feedback.jsonl")},
        # As configs/opensesame.k8s.yaml lays it out: everything a job or another node reads on shared storage.
        "learning": {"log_uri": str(shared / "labels"), "base_data": tiny_settings.learning.base_data,
                     "storage_uri": str(shared / "ray_results"), "dashboard_url": head.dashboard_url,
                     "writer_block_ms": 200, "admin_token": ADMIN_TOKEN, "retrain_after_labels": 0,
                     "train_workers": 1, "worker_cpus": 0.4, "driver_cpus": 0.2, "reload_check_s": 2,
                     # The tiny test ranker's holdout moves by several cases between fits: this module tests
                     # where the job runs and what it promotes (test_retrain.py tests the gate).
                     "gate_tolerance": 1.0},
        "training": {"dev_cases": str(gate_cases)},
        # Closed-loop clients as fast as the service answers (4 of them exceed 20 requests/s each): quotas are
        # tests/serve/app's subject, faults this module's.
        "clients": {"rate_per_s": 1000, "burst": 1000},
    }
    port = free_port()
    prod = load_config(PROJECT_ROOT / "configs" / "serve.prod.yaml")
    config = variant(prod, port, settings, f"models:/{reg.model_name}@{reg.alias}", llm=False)
    # Scaled down to this machine: one HAProxy (every node's would bind the same port here), fixed replica counts.
    config["proxy_location"], config["http_options"]["host"] = "HeadOnly", "127.0.0.1"
    for deployment in config["applications"][0]["deployments"]:
        deployment.pop("autoscaling_config", None)
        deployment |= {"num_replicas": 2, "max_replicas_per_node": 1} if deployment["name"] in SPREAD else {}
        deployment["ray_actor_options"] = {"num_cpus": 0.1}
    fault_redis.client().delete(STREAM)
    with serve_app(config, head, list(nodes.values())):
        base = f"http://127.0.0.1:{port}"
        spec_id = httpx.post(base + "/specs", json={"spec": BILLING}, timeout=120).json()["spec_id"]
        first = httpx.post(base + "/predict", json={"user_id": "first", "spec_id": spec_id}, timeout=60)
        assert first.status_code == 200, first.text
        print(f"from nothing to a served prediction on the three-node stand-in: {time.monotonic() - started:.1f} s")
        yield Stand(base, head, nodes, fault_redis, spec_id, settings["learning"]["log_uri"], shared, reg)


def _feedback(client: httpx.Client, stand: Stand, prediction_id: str) -> int | str:
    """A label's status, or the transport error that took its answer: when the Ingress replicas change, HAProxy
    reloads and closes its idle keep-alive connections, and a request sent on one at that moment is lost (a
    client retries it, as RequestLoop's clients record it: one failed request)."""
    try:
        return client.post(stand.base + "/feedback", json={"prediction_id": prediction_id, "none": True}).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def _failure_window(samples: list[Sample]) -> float:
    """Seconds from the first failed request sent to the last one; 0 without failures."""
    failed = [s.sent for s in samples if not isinstance(s.status, int) or not 200 <= s.status < 300]
    return round(max(failed) - min(failed), 2) if failed else 0.0


def _running(stand: Stand, timeout_s: float = 120) -> float:
    """Seconds until Serve reports two RUNNING replicas of every spread deployment again."""
    started = time.monotonic()

    def states() -> dict[str, Any]:
        deployments = app_status(stand.head.dashboard_url).get("deployments", {})
        return {d: dict(Counter(r["state"] for r in deployments.get(d, {}).get("replicas", []))) for d in SPREAD}

    while any(state != {"RUNNING": 2} for state in states().values()):
        assert time.monotonic() - started < timeout_s, states()
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def test_a_worker_node_crash_mid_load_loses_no_accepted_label(stand: Stand) -> None:
    ids = stand.predictions(120)
    accepted: list[str] = []
    # Paced (tests.support.PACE_S): the node comes back under this load, and sixteen closed-loop clients on two cores
    # starved its dashboard agent past the raylet's fixed 15 s wait (ray#65983), twice in a row in one `make test`.
    with stand.load(clients=4, pause_s=PACE_S) as predicting:
        time.sleep(5)
        node = stand.nodes["node_b"]
        crashed = time.time()
        with httpx.Client(timeout=30) as client:
            for n, prediction_id in enumerate(ids):
                if n == 10:
                    node.stop(grace_s=0)  # the node and every replica on it, at once
                if _feedback(client, stand, prediction_id) == 202:
                    accepted.append(prediction_id)
        node.start()  # the pod comes back
        restored = _running(stand)
        time.sleep(5)
    report = predicting.report("", since=crashed)
    window = _failure_window(predicting.samples)
    print(f"worker node crash: {report['requests']} predictions, {report['failed']} failed "
          f"({report['failures']}) within {window} s, p99 {report.get('p99_ms')} ms; replicas back "
          f"{restored} s after the node restarted; feedback accepted {len(accepted)}/{len(ids)}")
    streamed = {FeedbackRecord.model_validate_json(f[b"record"]).prediction_id
                for _, f in stand.redis.client().xrange(STREAM)}
    assert set(accepted) <= streamed, "a label answered 202 is missing from the stream"
    # Requests in flight on the crashed node fail (HAProxy answers 500 for those on its Ingress replica); the
    # others fail over within the window in which Ray notices the node is gone (1 s health checks, 3 misses); a
    # request sent to the crashed node's replicas in that window waits for it, so the window bounds the p99 too.
    assert report["requests"] > 100 and window <= 5 and report["p99_ms"] <= 5000


def test_one_replica_of_each_deployment_killed_in_turn(stand: Stand) -> None:
    windows = {}
    with stand.load() as predicting:
        time.sleep(3)
        for deployment in (*SPREAD, "LearningLoop"):
            victim = stand.replicas(deployment)[0]
            before = len(predicting.samples)
            os.kill(victim.pid, signal.SIGKILL)  # every node is on this machine
            time.sleep(6)
            windows[deployment] = _failure_window(predicting.samples[before:])
        restored = _running(stand)
    report = predicting.report("", since=0)
    print(f"replica kills: {report['requests']} predictions, {report['failed']} failed ({report['failures']}); "
          f"failure window per kill {windows}; all replicas back after {restored} s more; "
          f"p99 {report.get('p99_ms')} ms")
    assert all(window <= 6 for window in windows.values())
    assert report["failed"] <= 0.05 * report["requests"]


def test_redis_killed_and_restarted_under_load_loses_no_label(stand: Stand) -> None:
    if not stand.redis.owned:
        pytest.skip("needs a redis-server binary: this test kills the server and starts it again")
    ids: list[str] = []
    accepted: list[str] = []
    statuses: Counter[int] = Counter()
    stored: Counter[str] = Counter()  # stream or spool
    # Seconds into the session: Redis is killed at 4 and started again at 14 (its append-only file intact).
    schedule = [(4.0, stand.redis.kill), (14.0, stand.redis.start), (20.0, None)]
    killed = float("inf")
    with stand.load() as predicting:
        time.sleep(3)
        started = time.monotonic()
        with httpx.Client(timeout=30) as client:
            while schedule:  # a user predicts, then labels that prediction at once
                if time.monotonic() - started >= schedule[0][0]:
                    _, action = schedule.pop(0)
                    killed = min(killed, time.time())  # the first action's time: the kill
                    if action is not None:
                        action()
                    continue
                predicted = client.post(stand.base + "/predict", json={"user_id": f"fb-{len(ids)}-{time.time_ns()}",
                                                                      "spec_id": stand.spec_id})
                assert predicted.status_code == 200, predicted.text
                ids.append(predicted.json()["prediction_id"])
                response = client.post(stand.base + "/feedback", json={"prediction_id": ids[-1], "none": True})
                statuses[response.status_code] += 1
                if response.status_code == 202:
                    accepted.append(ids[-1])
                    stored[response.json()["stored"]] += 1
    steady = outcome([s for s in predicting.samples if s.sent < killed])
    report = outcome([s for s in predicting.samples if s.sent >= killed])  # Redis down, back, catching up
    logged = _log_rows_of(stand, set(ids), expected=len(accepted))
    print(f"redis killed and restarted: {report['requests']} predictions, {report['failed']} failed, "
          f"p50 {report.get('p50_ms')} ms, p99 {report.get('p99_ms')} ms (before the kill: p50 "
          f"{steady.get('p50_ms')} ms, p99 {steady.get('p99_ms')} ms); feedback accepted {len(accepted)} of "
          f"{len(ids)} ({dict(stored)}; statuses {dict(statuses)}), in the label log {len(logged)}")
    # A stall is requests waiting on Redis (a time-out each, or the outage's backlog written back in their path);
    # the yardstick is this machine's own tail under the same load before the kill, not an absolute figure.
    assert report["requests"] > 100 and report["failed"] == 0 and steady["failed"] == 0
    assert report["p99_ms"] <= max(1000, 3 * steady["p99_ms"]), (report, steady)
    assert logged == accepted, "every accepted label in the log exactly once, in the order it was accepted"
    # While Redis is down a replica labels the predictions it made itself (spooled, replayed in order after the
    # restart); for the others it answers 503 + Retry-After (they may exist), never 404 and never 500.
    assert set(statuses) <= {202, 503} and len(accepted) > len(ids) / 2 and stored["spool"] > 0


def _log_rows_of(stand: Stand, ids: set[str], expected: int, timeout_s: float = 60) -> list[str]:
    """The prediction ids of `ids` in the label log (every row, duplicates kept), in stream order, once the
    writer has caught up (`expected` rows) or the time is up."""
    import pyarrow.dataset as ds

    from pipeline.adapters.label_log import LOG_VERSION

    directory = Path(stand.log_uri) / LOG_VERSION
    deadline = time.monotonic() + timeout_s
    while True:
        rows: list[str] = []
        if directory.exists():
            table = ds.dataset(directory, format="parquet").to_table(columns=["entry_id", "prediction_id"])
            ordered = sorted(zip(table["entry_id"].to_pylist(), table["prediction_id"].to_pylist()),
                             key=lambda row: tuple(int(part) for part in row[0].split("-")))
            rows = [prediction_id for _, prediction_id in ordered if prediction_id in ids]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def test_retraining_runs_on_the_cluster_and_every_replica_serves_the_promoted_model(stand: Stand) -> None:
    """POST /admin/retrain: the LearningLoop submits the job to the head's job API; its driver is placed on a
    worker node (the head has no CPUs), Ray Train writes its run to the shared storage, the gate promotes, and
    both Ranker replicas (one per node) answer with the new version, under load, without a failed request."""
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_nodes

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    before = registry.champion(stand.registry)
    started = time.monotonic()
    submitted = httpx.post(stand.base + "/admin/retrain", headers=admin, timeout=60)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    with stand.load(clients=4, pause_s=PACE_S) as predicting:
        deadline = time.monotonic() + 600
        while (job := httpx.get(f"{stand.base}/admin/retrain/{job_id}", headers=admin, timeout=60).json())[
            "status"
        ] not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.monotonic() < deadline, job
            time.sleep(2)
        wall_s = time.monotonic() - started
        assert job["status"] == "SUCCEEDED" and job["gate"]["promoted"], job
        new = job["model_version"]
        assert new != before.label and registry.champion(stand.registry).label == new
        promoted_at = job["gate"]["promoted_at"]
        deadline = time.monotonic() + 60
        while not predicting.seen(new):
            assert time.monotonic() < deadline, "the new model was not served"
            time.sleep(0.5)
        time.sleep(8)  # past every replica's alias check (2 s) and a model load, under load
    report = predicting.report(new, since=promoted_at)
    head_id = next(n.node_id for n in list_nodes(address=stand.head.dashboard_url) if n.is_head_node)
    driver_node = JobSubmissionClient(stand.head.dashboard_url).get_job_info(job_id).driver_node_id
    runs = [p for p in (stand.shared / "ray_results").glob("*") if p.is_dir()]
    rankers = stand.replicas("Ranker")
    print(f"retraining on the stand-in: job {job_id} {wall_s:.1f} s wall to SUCCEEDED, promoted {new}; "
          f"{report['requests']} predictions since the promotion, {report['failed']} failed, last answer of the "
          f"old version {report.get('last_old_version_s')} s after it")
    assert driver_node and driver_node != head_id, "the job's driver runs on a worker node"
    assert runs, "Ray Train wrote its run to the shared storage"
    assert len({r.node_id for r in rankers}) == 2
    assert report["failed"] == 0 and report["last_old_version_s"] <= 8, report


def test_labels_spooled_by_a_node_that_dies_while_redis_is_down_are_replayed(stand: Stand) -> None:
    """The spool outlives its pod: one file on storage every node shares (KubeRay: the shared volume), written under
    a file lock. Redis down; labels accepted through both Ingress replicas go to the spool; node_a dies with its
    replicas; Redis comes back; the next label through the surviving replica replays them all, oldest first.
    Last in this module: node_a stays down."""
    if not stand.redis.owned:
        pytest.skip("needs a redis-server binary: this test kills the server and starts it again")
    ids = stand.predictions(40)
    stand.redis.kill()
    accepted = []
    with httpx.Client(timeout=30) as client:
        for prediction_id in ids:
            # A connection per label, so that both replicas spool.
            response = httpx.post(stand.base + "/feedback", json={"prediction_id": prediction_id, "none": True},
                                  timeout=30)
            # Each replica holds, while Redis is down, the predictions it made itself: 503 for the others.
            assert response.status_code in (202, 503), response.text
            if response.status_code == 202:
                assert response.json()["stored"] == "spool"
                accepted.append(prediction_id)
        stand.nodes["node_a"].stop(grace_s=0)  # the pod dies: its Ingress replica's process and whatever it held
        time.sleep(8)  # Serve stops routing to the dead replicas (3 missed 1 s health checks)
        stand.redis.start()
        time.sleep(2)  # past the surviving replica's back-off
        after = []
        for _ in range(2):  # a label that reaches Redis replays the spool first
            made = client.post(stand.base + "/predict", json={"user_id": f"after-{time.time_ns()}",
                                                               "spec_id": stand.spec_id})
            assert made.status_code == 200, made.text
            after.append(made.json()["prediction_id"])
            assert client.post(stand.base + "/feedback", json={"prediction_id": after[-1], "none": True}).status_code == 202
    logged = _log_rows_of(stand, {*ids, *after}, expected=len(accepted) + len(after))
    print(f"spool across a dead node: {len(accepted)} of {len(ids)} labels spooled while Redis was down, node_a "
          f"killed, {len(logged)} rows in the label log after Redis came back")
    assert len(accepted) >= len(ids) / 4
    assert logged == accepted + after, "every spooled label in the log exactly once, oldest first"
    assert not (stand.shared / "spool" / "feedback.jsonl").exists(), "the replay emptied the spool"
