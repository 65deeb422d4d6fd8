"""The Serve application over HTTP, shared by this directory's modules: a private local Ray cluster, the real
graph deployed from configs/serve.local.yaml (as `serve deploy` does), a real Redis, MLflow on sqlite and a ranker
trained in the run. One app for the package (it starts in a minute and more, the vLLM generator last); a test that
changes what it runs (a redeploy, the registry's alias, Redis) puts it back in a `finally` (`Served.restored`), so
each module starts from the app as this fixture made it."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ops.cluster import ClusterPorts, RayCluster, free_port, load_config, serve_app, variant
from pipeline.adapters import registry
from pipeline.adapters.llm_checkpoint import prepare
from pipeline.adapters.minilm import embedder_name
from pipeline.adapters.serve_api import app_status, wait_running
from pipeline.settings import PROJECT_ROOT, RegistrySettings
from tests.serve.app.served import (
    ADMIN_TOKEN,
    BILLING,
    OWNER_KEY,
    STREAM,
    TIGHT_KEY,
    EarlyAnswer,
    Served,
    key_entry,
)
from tests.support import RedisServer, SpecServer


@pytest.fixture(scope="package")
def served(
    tiny_model,
    tiny_settings,
    gate_cases: Path,
    redis_server: RedisServer,
    spec_server: SpecServer,
    zero_step_tuned: Path,
) -> Iterator[Served]:
    llm_model = prepare(PROJECT_ROOT / "var" / "models" / "smollm2-135m-instruct")
    work = Path(tempfile.mkdtemp(prefix="os-serve-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    reg = RegistrySettings(tracking_uri=f"sqlite:///{work / 'mlflow.db'}", artifact_root=(work / "art").as_uri())
    # The second version is the same ranker recorded as trained on another embedder (the zero-step tuned copy of
    # the packaged MiniLM): swapping to it switches the vectors too, as the cold-start ranker's replacement does.
    embedder = tiny_settings.embedder.model_copy(update={"model_dir": zero_step_tuned})
    retagged = work / "model-tuned"
    shutil.copytree(tiny_settings.paths.model_dir, retagged)
    meta = json.loads((retagged / "meta.json").read_text())
    (retagged / "meta.json").write_text(json.dumps({**meta, "embedder": embedder_name(embedder)}))
    versions = [registry.register(folder, reg, run_name=f"test-{i}")
                for i, folder in enumerate((tiny_settings.paths.model_dir, retagged), start=1)]
    spool = work / "spool.jsonl"
    cluster = RayCluster(ClusterPorts.free(), work / "ray")
    settings = {
        # A 2 s socket time-out: with this module's load tests and the LLM on 2 cores, a Redis reply can take
        # longer than the default 0.25 s, and a time-out is an outage to the store (feedback on an unknown id then
        # answers 503 "unreachable moments ago", rightly, for the contract test). Stopping Redis still fails at once.
        "cache": {"redis_url": redis_server.url, "key_prefix": f"test{time.time_ns()}:", "retry_after_s": 0.5,
                  "socket_timeout_s": 2.0},
        "fetch": {"allow_addresses": ["127.0.0.1/32"], "connect_timeout_s": 2, "read_timeout_s": 2},
        "registry": reg.model_dump(),
        "embedder": embedder.model_dump(mode="json"),  # the tiny ranker's and the zero-step tuned one
        "feedback": {"stream": STREAM, "spool_path": str(spool)},
        # The real prepared model in the graph; the router asks it whenever a request grants >= 100 ms, and
        # requests that state no budget (every other test) get 50 ms, so they never wait for it.
        "llm": {
            "model": str(llm_model),
            "kv_cache_bytes": 128 * 1024 * 1024,
            "min_budget_ms": 100,
            "default_budget_ms": 50,
            "confidence_threshold": 1.0,
            # Under the proxy's 30 s request time-out with room for the rest of the request: an LLM wait as long
            # as the time-out made the proxy answer 408 before the ranker's fallback could (make test, two lanes).
            "timeout_ms": 20000,
        },
        "learning": {
            "admin_token": ADMIN_TOKEN,
            "log_uri": str(work / "labels"),
            "base_data": tiny_settings.learning.base_data,
            "dashboard_url": cluster.dashboard_url,
            "retrain_after_labels": 0,
            "worker_cpus": 0.4,
            "reload_check_s": 2,
            "counts_refresh_s": 0.2,
            "writer_block_ms": 200,
            # Here the gate waves every candidate through: these tests test promotion and reload; the tiny test
            # ranker's 73 holdout problems move by several cases between fits (tests/train/test_retrain.py tests
            # the gate).
            "gate_tolerance": 1.0,
        },
        "training": {"dev_cases": str(gate_cases)},
        "imports": {"upload_dir": str(work / "imports"), "secret": "test-import-secret"},
        # Keys are accepted, not required: the other tests call without one (per-user quotas, generous here).
        "clients": {
            "api_keys": [
                key_entry(OWNER_KEY, "owner"),
                key_entry(TIGHT_KEY, "tight", rate_per_s=1, burst=3, max_specs=1),
            ],
            "rate_per_s": 1000,
            "burst": 1000,
            "max_specs": 1000,
        },
    }
    port = free_port()
    config = variant(load_config(PROJECT_ROOT / "configs" / "serve.local.yaml"), port, settings, versions[0].uri)
    base = f"http://127.0.0.1:{port}"
    # As `make serve` does: up once /readyz answers, before the vLLM generator (the slowest to start) is.
    with serve_app(config, cluster, answering=f"{base}/readyz"):
        spec_server.routes["/serve/billing.yaml"] = (200, {"ETag": '"b1"'}, BILLING.encode())
        redis_server.client().delete(STREAM)
        body = {"user_id": "u1", "spec_url": spec_server.url("/serve/billing.yaml"), "prompt": "pay it",
                "events": [{"endpoint": "GET /v1/invoices/in_5"}], "latency_budget_ms": 2000}
        early = EarlyAnswer(app_status(cluster.dashboard_url)["status"], httpx.post(f"{base}/predict", json=body,
                                                                                   timeout=60))
        wait_running(cluster.dashboard_url)  # the other tests want every deployment
        yield Served(
            base,
            cluster,
            config,
            versions,
            redis_server,
            spec_server.url("/serve/billing.yaml"),
            spool,
            work / "labels",
            early,
        )
