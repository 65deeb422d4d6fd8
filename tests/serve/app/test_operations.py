"""The app operated: a locust load with an SLO, a short soak, shedding beyond capacity, replicas scaled under load,
Prometheus scraping it."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.bench import LoadLevel, run_locust
from ops.cluster import free_port
from ops.load import RequestLoop
from ops.overload import overload
from ops.prometheus import prometheus_command, prometheus_config
from ops.reconfigure import reconfigure_under_load, replicas
from ops.soak import plot, soak, summary
from pipeline.adapters.serve_api import deployment, running_config
from tests.serve.app.served import (
    BILLING,
    Served,
)
from tests.support import FIXTURES, TMDB_SPEC, poll

pytestmark = pytest.mark.slow


def test_the_locust_load_test_reports_each_scenario_and_fails_on_a_missed_slo(served: Served, tmp_path: Path) -> None:
    """loadtest/locustfile.py as `opensesame bench --url` runs it: warm sessions, cold specs by URL from its own
    static server, registrations; the CSV has every route; an SLO the service cannot meet exits 1."""
    specs = [str(FIXTURES / "billing_oas30.yaml"), str(TMDB_SPEC)]
    met = run_locust(served.base, LoadLevel(users=6, ramp_s=2, hold_s=12, slo_p99_ms=5000), specs, tmp_path / "met")
    print(met)
    routes = {row["route"]: row for row in met["routes"]}
    assert {"/predict warm", "/feedback", "/predict cold spec_url", "/specs inline", "Aggregated"} <= set(routes)
    assert met["slo_met"] and met["verdict"].startswith("SLO met"), met
    assert routes["Aggregated"]["failures"] == 0 and routes["/predict warm"]["requests"] >= 20
    missed = run_locust(served.base, LoadLevel(users=2, ramp_s=1, hold_s=3, slo_p99_ms=0.001), specs, tmp_path / "x")
    assert not missed["slo_met"] and "warm /predict p99" in missed["verdict"], missed


def test_a_short_soak_samples_every_process_and_writes_its_csv_and_plot(served: Served, tmp_path: Path) -> None:
    """`opensesame soak` at a small scale: the locust mix, a sample at every timeline window with the memory of
    the cluster's processes and Redis, the CSV and the plot; no failed request."""
    specs = [FIXTURES / "billing_oas30.yaml", TMDB_SPEC]
    # Ten users: locust gives each scenario its share by weight (8 warm, 1 cold by URL, 1 inline registration).
    report = soak(served.base, specs, minutes=0.25, users=10, out_dir=tmp_path, user_pool=50, window_s=4,
                  warmup_min=0, redis_url=served.redis.url, spool=served.spool, label_log=served.labels, log=print)
    plot(report, tmp_path / "soak.png")
    assert report.failed == 0 and report.requests > 20, summary(report)
    assert len(report.samples) >= 3
    assert all("ServeReplica:opensesame:Ranker" in s.pss_mb and "raylet" in s.pss_mb and "gcs_server" in s.pss_mb
               for s in report.samples), report.samples[-1].pss_mb
    assert all(s.redis_mb and s.redis_keys for s in report.samples)
    assert report.specs["inline"] + report.specs["by_url"] > 0 and "ServeReplica:opensesame:Ranker" in report.growth
    rows = list(csv.DictReader((tmp_path / "soak.csv").open()))
    assert {r["process"] for r in rows} >= {"ServeReplica:opensesame:Ingress", "redis-server"}
    assert (tmp_path / "soak.png").read_bytes()[:4] == b"\x89PNG"


def test_beyond_capacity_the_ingress_sheds_with_retry_after_and_recovers(served: Served, tmp_path: Path) -> None:
    """`opensesame overload` at a small scale: the Ingress admits 2 requests at once and queues 2 (Serve's
    max_ongoing_requests and max_queued_requests, changed in place), 24 users: every answer is 2xx, 429 or 503
    with Retry-After, some are shed, and a prediction is answered at the idle latency within 5 s of the stop."""
    limits = {"max_ongoing_requests": 2, "max_queued_requests": 2}
    with served.restored():
        served.redeploy(change=lambda config: deployment(config, "Ingress").update(limits))
        report = overload(served.base, [TMDB_SPEC], users=24, hold_s=6, out_dir=tmp_path, ramp_s=2)
    print(report.summary())
    assert report.failed == 0 and set(report.statuses) <= {200, 201, 202, 429, 503}, report.summary()
    assert report.statuses.get(503, 0) > 0 and report.statuses.get(200, 0) > 0, report.summary()
    assert report.recovery_s is not None and report.recovery_s <= 5, report.summary()


def test_replicas_scaled_up_and_down_under_load_fail_no_request(served: Served) -> None:
    """`opensesame reconfigure` at a small scale: `serve deploy` of the running config with the Ranker at two
    replicas, then back at one, while 4 clients predict; every request of every step answered."""
    spec_id = served.post("/specs", {"spec": BILLING}).json()["spec_id"]
    body = {"spec_id": spec_id, "events": [{"endpoint": "GET /v1/invoices/in_1"}]}
    loop = RequestLoop(served.base + "/predict", lambda client, n: {**body, "user_id": f"rc-{client}"}, clients=4)
    with served.restored():
        steps = reconfigure_under_load(served.cluster.dashboard_url, loop,
                                       [replicas("Ranker", 2), replicas("Ranker", 1)], settle_s=2)
        assert deployment(running_config(served.cluster.dashboard_url), "Ranker")["num_replicas"] == 1
    print(steps)
    assert [s.step for s in steps] == ["before any change", "Ranker replicas -> 2", "Ranker replicas -> 1"]
    assert all(s.requests > 5 and s.failed == 0 for s in steps), steps


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus (apt-get install prometheus) not installed")
def test_opensesame_monitor_scrapes_the_cluster_and_answers_dashboard_queries(served: Served, tmp_path: Path) -> None:
    """Prometheus as `opensesame monitor` runs it (Ray's generated scrape config plus our rules) on this app."""
    port = free_port()
    config = prometheus_config(served.cluster.temp_dir, tmp_path)
    with subprocess.Popen(prometheus_command(config, tmp_path / "data", port), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as prometheus:
        try:
            def query(expr: str) -> list[dict[str, Any]]:
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=5)
                except httpx.HTTPError:
                    return []
                return answer.json()["data"]["result"] if answer.status_code == 200 else []

            served.predict(spec_url=served.spec_url, prompt="pay it")
            scraped = poll(lambda: query("sum by (model_version) (ray_opensesame_predictions_total)"), timeout_s=60)
            assert all(float(row["value"][1]) > 0 for row in scraped)
            rules = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).json()["data"]["groups"]
            assert {rule["name"] for group in rules for rule in group["rules"]} >= {
                "OpenSesameLatencyP99High", "OpenSesameErrorRateHigh", "OpenSesameCoverageLow"
            }
        finally:
            prometheus.terminate()
