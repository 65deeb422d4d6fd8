"""`opensesame monitor`: Prometheus on this machine (Debian's `prometheus` package) scraping the local cluster of
`make serve` with the scrape config Ray generates, and evaluating OpenSesame's alert rules
(k8s/monitoring/prometheus-rules.yaml, the same rules as on Kubernetes).

Ray writes `<temp dir>/session_latest/metrics/prometheus/prometheus.yml` when its head starts: one job that
discovers every node's metrics export port through a file Ray keeps current. Ctrl-C stops Prometheus.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from pipeline.errors import OpenSesameError
from pipeline.settings import PROJECT_ROOT

RULES = PROJECT_ROOT / "k8s" / "monitoring" / "prometheus-rules.yaml"


class MonitorError(OpenSesameError):
    """Prometheus cannot be started: what is missing and how to get it."""


def prometheus_config(ray_temp_dir: Path, out_dir: Path) -> Path:
    """Ray's generated scrape config plus OpenSesame's rules, written under `out_dir`; the config's path."""
    generated = ray_temp_dir / "session_latest" / "metrics" / "prometheus" / "prometheus.yml"
    if not generated.exists():
        raise MonitorError(f"no scrape config at {generated}: start the service first (`make serve`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    rules = out_dir / "opensesame-rules.yml"
    # A PrometheusRule's spec is a Prometheus rule file.
    rules.write_text(yaml.safe_dump(yaml.safe_load(RULES.read_text())["spec"], sort_keys=False))
    config = yaml.safe_load(generated.read_text())
    config["rule_files"] = [str(rules)]
    path = out_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prometheus_command(config: Path, data_dir: Path, port: int) -> list[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise MonitorError("no `prometheus` on PATH: install it (Debian: apt-get install prometheus)")
    return [binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=7d"]


def run_prometheus(ray_temp_dir: Path, out_dir: Path, port: int) -> int:
    config = prometheus_config(ray_temp_dir, out_dir)
    command = prometheus_command(config, out_dir / "data", port)
    print(f"Prometheus on http://127.0.0.1:{port} (rules: {RULES.relative_to(PROJECT_ROOT)}); Ctrl-C stops it",
          flush=True)
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 0
