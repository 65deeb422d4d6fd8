"""`opensesame demo learning`: users with a habit the base model does not know, through the real service.

A private Ray cluster runs the Serve app (configs/serve.local.yaml without the LLM) on a real Redis, with its
own MLflow registry whose champion is the default ranker. The habit: after opening one of a few Stripe
objects, users go to an operation the base model ranks around 10th. The demo measures hit@1 of that habit on
fresh users, then lets simulated users work (half report explicitly, half are labelled implicitly by their
next request), measures again (online counts), retrains through `POST /admin/retrain` while 16 clients keep
predicting, waits for the promoted model to serve, and measures a third time.
"""

from __future__ import annotations

import random
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from ops.champion import ensure_champion
from ops.cluster import ClusterPorts, RayCluster, free_port, load_config, serve_app, variant
from ops.load import RequestLoop, register_spec
from pipeline.adapters import registry
from pipeline.settings import PROJECT_ROOT, RegistrySettings, Settings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.load import load_catalogue

# Objects users open before their habitual next call (those of them the spec has).
ANCHORS = (
    "GET /v1/customers/{customer}",
    "GET /v1/invoices/{invoice}",
    "GET /v1/charges/{charge}",
    "GET /v1/subscriptions/{subscription_exposed_id}",
    "GET /v1/products/{id}",
)
HABIT_RANK = 10  # the habitual call is the base model's 10th guess
RELOAD_CHECK_S = 5.0  # the demo's Ranker replicas re-resolve the champion alias this often


def concrete(path: str, rng: random.Random) -> str:
    """A call as a client makes it: every {param} filled with an id."""
    return re.sub(r"\{([^}]+)\}", lambda m: f"{m.group(1)[:4]}_{rng.randrange(16**8):08x}", path)


class Demo:
    def __init__(self, base: str, spec_id: str, catalogue: Catalogue, token: str, seed: int) -> None:
        self.base = base
        self.spec_id = spec_id
        self.paths = {op.id: op.path for op in catalogue.operations}
        self.token = token
        self.rng = random.Random(seed)
        self.client = httpx.Client(timeout=120)

    def predict(self, user: str, events: list[str], k: int = 5) -> dict[str, Any]:
        body = {"user_id": user, "spec_id": self.spec_id, "events": [{"endpoint": e} for e in events], "k": k}
        response = self.client.post(f"{self.base}/predict", json=body)
        response.raise_for_status()
        return response.json()

    def call(self, operation: str) -> str:
        return f"{operation.split()[0]} {concrete(self.paths[operation], self.rng)}"

    def habits(self) -> dict[str, str]:
        """anchor -> the base model's HABIT_RANK-th guess after it, which becomes the habit."""
        habits = {}
        for anchor in (a for a in ANCHORS if a in self.paths):
            ranked = [
                p["endpoint"] for p in self.predict("demo-probe", [self.call(anchor)], k=HABIT_RANK)["predictions"]
            ]
            if len(ranked) == HABIT_RANK:
                habits[anchor] = ranked[-1]
        return habits

    def hit_at_1(self, habits: dict[str, str], per_habit: int, tag: str) -> float:
        """Fresh users (no feedback, no later request): what the service answers a newcomer with the habit."""
        hits = 0
        for anchor, target in habits.items():
            for n in range(per_habit):
                top = self.predict(f"eval-{tag}-{anchor}-{n}", [self.call(anchor)], k=1)["predictions"]
                hits += bool(top) and top[0]["endpoint"] == target
        return round(hits / (per_habit * len(habits)), 4)

    def user_session(self, user: int, habits: dict[str, str]) -> int:
        """One user's day: open an object, make the habitual call. Even users report it (/feedback), odd users
        are labelled by their next request, whose history shows the call. Returns the labels produced."""
        anchor = self.rng.choice(sorted(habits))
        opened, then = self.call(anchor), self.call(habits[anchor])
        prediction = self.predict(f"user-{user}", [opened])
        if user % 2 == 0:
            response = self.client.post(
                f"{self.base}/feedback", json={"prediction_id": prediction["prediction_id"], "called": then}
            )
            response.raise_for_status()
        else:
            self.predict(f"user-{user}", [opened, then])
        return 1

    def retrain(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        job = self.client.post(f"{self.base}/admin/retrain", headers=headers)
        job.raise_for_status()
        job_id = job.json()["job_id"]
        while True:
            status = self.client.get(f"{self.base}/admin/retrain/{job_id}", headers=headers).json()
            if status["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            time.sleep(2)


def demo_learning(
    settings: Settings, spec: str, redis_url: str, labels: int, per_habit: int, log: Callable[[str], object] = print
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="os-demo-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    reg = RegistrySettings(tracking_uri=f"sqlite:///{work / 'mlflow.db'}", artifact_root=(work / "art").as_uri())
    ensure_champion(settings.model_copy(update={"registry": reg}), log=log)
    token = secrets.token_urlsafe(16)
    cluster = RayCluster(ClusterPorts.free(), work / "ray")
    port = free_port()
    local = load_config(PROJECT_ROOT / "configs" / "serve.local.yaml")
    # No LLM: the habit is a ranking matter, and the generator would only slow the demo down.
    settings_args = {**local["applications"][0]["args"].get("settings", {}),
                     **_service_settings(settings, work, reg, cluster.dashboard_url, token, redis_url)}
    config = variant(local, port, settings_args, f"models:/{reg.model_name}@{reg.alias}", llm=False)
    report: dict[str, Any] = {"spec": spec}
    log(f"starting a private Ray cluster and the service on :{port} (work dir {work})")
    try:
        with serve_app(config, cluster):
            base = f"http://127.0.0.1:{port}"
            catalogue = load_catalogue(spec, settings.fetch)
            demo = Demo(base, register_spec(base, Path(spec).read_text()), catalogue, token, seed=7)
            habits = demo.habits()
            report["habits"] = habits
            report["hit@1_before"] = demo.hit_at_1(habits, per_habit, "before")
            log(f"habits: {habits}\nhit@1 before any feedback: {report['hit@1_before']}")

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=8) as pool:
                produced = sum(pool.map(lambda u: demo.user_session(u, habits), range(labels)))
            report["labels_sent"] = produced
            report["simulate_s"] = round(time.perf_counter() - started, 1)
            time.sleep(settings.learning.counts_refresh_s + 1)
            report["hit@1_online_counts"] = demo.hit_at_1(habits, per_habit, "online")
            log(f"{produced} labels in {report['simulate_s']} s; "
                f"hit@1 with online counts: {report['hit@1_online_counts']}")

            report.update(_retrain_under_load(demo, habits, reg, log))
            report["hit@1_after_retrain"] = demo.hit_at_1(habits, per_habit, "after")
            report["model_after"] = demo.predict("demo-probe", [demo.call(min(habits))])["model_version"]
            log(f"hit@1 after retraining and reload ({report['model_after']}): {report['hit@1_after_retrain']}")
    finally:
        shutil.rmtree(work / "ray", ignore_errors=True)
    return report


def _service_settings(settings: Settings, work: Path, reg: RegistrySettings, dashboard_url: str, token: str,
                      redis_url: str) -> dict[str, Any]:
    """The demo service's settings over serve.local.yaml's: its own keys, stream, registry and label log."""
    return {
        "cache": {"redis_url": redis_url, "key_prefix": f"demo{time.time_ns()}:"},
        "feedback": {"stream": f"demo:{time.time_ns()}:feedback", "spool_path": str(work / "spool.jsonl")},
        "registry": reg.model_dump(),
        "learning": {
            "admin_token": token,
            "log_uri": str(work / "labels"),
            "base_data": settings.learning.base_data,
            "dashboard_url": dashboard_url,
            "retrain_after_labels": 0,
            "worker_cpus": 0.4,
            "reload_check_s": RELOAD_CHECK_S,
        },
        # The swap is measured under 16 closed-loop clients, each as fast as the service answers: no quota here.
        "clients": {"rate_per_s": 1000, "burst": 1000},
    }


def _retrain_under_load(demo: Demo, habits: dict[str, str], reg: RegistrySettings,
                        log: Callable[[str], object]) -> dict[str, Any]:
    """A retraining job while 16 clients predict: the job, its gate, and the requests around the swap."""
    champion = registry.champion(reg)
    anchors = sorted(habits)
    load_rng = random.Random(11)

    def body(client: int, n: int) -> dict[str, Any]:
        anchor = anchors[(client + n) % len(anchors)]
        return {
            "user_id": f"load-{client}",
            "spec_id": demo.spec_id,
            "k": 5,
            "events": [{"endpoint": f"GET {concrete(demo.paths[anchor], load_rng)}"}],
        }

    with RequestLoop(f"{demo.base}/predict", body, clients=16) as loop:
        time.sleep(3)
        job = demo.retrain()
        gate = job.get("gate") or {}
        if gate.get("promoted"):
            deadline = time.monotonic() + 3 * RELOAD_CHECK_S + 30
            while not loop.seen(job["model_version"]) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(RELOAD_CHECK_S + 2)  # past one alias check of every replica
    retrain = {k: job.get(k) for k in ("job_id", "status", "model_version", "message")}
    retrain["seconds"] = round((job.get("ended_at") or 0) - (job.get("started_at") or 0), 1)
    swap_load = loop.report(job.get("model_version") or "", since=gate.get("promoted_at") or time.time())
    log(f"retraining {job['status']}: {job.get('model_version')} promoted={gate.get('promoted')} "
        f"({gate.get('reason')}); under 16 clients: {swap_load}")
    return {"retrain": retrain, "gate": gate, "champion_before": champion.label if champion else None,
            "swap_load": swap_load}
