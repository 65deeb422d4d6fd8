"""The monitoring artefacts without a cluster: promtool (Debian's prometheus package) accepts the alert rules and
every dashboard query, and `opensesame monitor` turns Ray's generated scrape config into one with our rules.
tests/serve/app/test_telemetry.py checks the names they use against a running app's scrape."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops.prometheus import MonitorError, prometheus_config
from serve.telemetry import EXPORTED, exported
from tests.support import MONITORING, metric_names, monitoring_queries

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool (apt-get install prometheus) not installed")


@needs_promtool
def test_promtool_accepts_the_alert_rules_and_every_dashboard_query(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())["spec"]))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    # Dashboard queries as recording rules: promtool parses each ($__rate_interval is Grafana's, given a value).
    recorded = [{"record": f"q{i}", "expr": expr.replace("$__rate_interval", "1m")}
                for i, expr in enumerate(monitoring_queries().values())]
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_reads_our_metrics_under_their_exported_names() -> None:
    queries = monitoring_queries()
    ours = {name for expr in queries.values() for name in metric_names(expr) if name.startswith("ray_opensesame_")}
    known = {series for name, kind in EXPORTED.items() for series in exported(name, kind)}
    assert ours <= known, ours - known
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"p99 by stage", "Acceptance@1 and @3 by model version (1 h)", "Coverage", "Label log"} <= titles


@needs_promtool
def test_monitor_config_is_rays_scrape_config_with_our_rules(tmp_path: Path) -> None:
    session = tmp_path / "ray" / "session_latest" / "metrics" / "prometheus"
    session.mkdir(parents=True)
    discovery = tmp_path / "ray" / "session_x" / "prom_metrics_service_discovery.json"
    discovery.parent.mkdir()
    discovery.write_text(json.dumps([{"labels": {"job": "ray"}, "targets": ["127.0.0.1:52368"]}]))
    # The shape Ray 2.60 writes (ray/dashboard/modules/metrics/templates.py).
    (session / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "10s", "evaluation_interval": "10s"},
        "scrape_configs": [{"job_name": "ray", "file_sd_configs": [{"files": [str(discovery)]}]}],
    }))
    config = prometheus_config(tmp_path / "ray", tmp_path / "prom")
    assert yaml.safe_load(config.read_text())["rule_files"] == [str(tmp_path / "prom" / "opensesame-rules.yml")]
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and "8 rules found" in checked.stdout, checked.stdout + checked.stderr
    with pytest.raises(MonitorError, match="start the service first"):
        prometheus_config(tmp_path / "nothing", tmp_path / "prom")
