"""Traffic larger than one machine: `opensesame import --address` runs the import as a Ray job over Ray Data on a
multi-node cluster on this machine (a head with no CPUs and two worker nodes joined with `ray start --address`,
each from a working directory of its own), with a real Redis and the registry's champion. The files are given
as a path and a pattern of `s3://` URIs (a fake S3: no object store runs here); a session split across two files
is learned whole, as one file would teach it."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.cli import main
from ops.cluster import ClusterPorts, RayCluster, WorkerNode
from pipeline.adapters import registry
from pipeline.adapters.kv import ResilientStore
from pipeline.learning.online_counts import OnlineTransitions
from pipeline.settings import CacheSettings, RecallSettings, RegistrySettings, get_settings
from tests.support import FIXTURES, PACKAGED, FakeS3, RedisServer

pytestmark = pytest.mark.slow

TRAFFIC = FIXTURES / "traffic"
BILLING = FIXTURES / "billing_oas30.yaml"


@pytest.fixture(scope="module")
def cluster(tiny_settings, tiny_model) -> Iterator[tuple[RayCluster, RegistrySettings]]:
    work = Path(tempfile.mkdtemp(prefix="os-imp-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    reg = RegistrySettings(tracking_uri=f"sqlite:///{work / 'mlflow.db'}", artifact_root=(work / "art").as_uri())
    registry.promote(registry.register(tiny_settings.paths.model_dir, reg, run_name="import"), reg.alias, reg)
    head = RayCluster(ClusterPorts.free(), work / "head", num_cpus=0)
    head.start()
    # Workers' ports within 20000-22999, where `free_ports` never hands out the nodes' other ports (23000 and up
    # collided: a node's agent drew 23060 inside its own worker range). The fault stand's ranges: the two modules
    # run one after another in one lane.
    nodes = [WorkerNode(head, name, work / name, num_cpus=2, worker_ports=ports)
             for name, ports in (("node_a", (22000, 22499)), ("node_b", (22500, 22999)))]
    try:
        for node in nodes:
            node.start()
        yield head, reg
    finally:
        for node in nodes:
            node.stop()
        head.stop()


@pytest.mark.usefixtures("packaged_cli")
def test_an_import_over_ray_data_learns_sessions_split_across_files(
    cluster, redis_server: RedisServer, fake_s3: FakeS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
) -> None:
    head, reg = cluster
    har = json.loads((TRAFFIC / "billing.har").read_text())
    entries = har["log"]["entries"]
    halves = []
    for i in range(2):  # every other request: each session of the HAR has calls in both files
        half = tmp_path / f"part-{i}.har"
        half.write_text(json.dumps({"log": {**har["log"], "entries": entries[i::2]}}))
        halves.append(half)
    prefix = f"rdimp{time.time_ns()}:"
    for name, value in {
        "CACHE__REDIS_URL": redis_server.url, "CACHE__KEY_PREFIX": prefix,
        "FEEDBACK__STREAM": f"rdimp-{time.time_ns()}", "FEEDBACK__SPOOL_PATH": str(tmp_path / "spool.jsonl"),
        "IMPORTS__UPLOAD_DIR": str(tmp_path / "imports"), "IMPORTS__SECRET": "the deployment's secret",
        "LEARNING__LOG_URI": str(tmp_path / "labels"),
        "REGISTRY__TRACKING_URI": reg.tracking_uri, "REGISTRY__ARTIFACT_ROOT": reg.artifact_root,
    }.items():
        monkeypatch.setenv(f"OPENSESAME__{name}", value)
    get_settings.cache_clear()
    bucket = f"billing-{time.time_ns()}"
    fake_s3.put(f"{bucket}/2026-11-20.har", halves[1].read_bytes())
    files = [str(halves[0]), fake_s3.uri(f"{bucket}/2026-11-*.har")]  # read by the nodes, listed by the job
    command = ["import", *files, "--spec", str(BILLING), "--host", "api.billing.example",
               "--address", head.dashboard_url, *PACKAGED, "--json"]
    try:
        first_code = main(command)
        first = json.loads(capsys.readouterr().out)
        second_code = main(command)
        second = json.loads(capsys.readouterr().out)
    finally:
        get_settings.cache_clear()
    assert first_code == 0 and second_code == 0
    # What the whole HAR imported in one piece counts (test_traffic_import.py): three sessions of
    # list -> retrieve -> pay, each learned once, the retry counted once.
    assert (first["format"], first["requests"], first["matched"], first["unmatched"]) == ("har", 13, 10, 1)
    assert first["filtered"] == {"method": 1, "other_host": 1} and first["retries"] == 1
    assert (first["sessions"], first["labels"], first["already_imported"]) == (3, 9, 0)
    assert [w["steps"] for w in first["workflows"]] == [
        ["GET /invoices", "GET /invoices/{invoice}", "POST /invoices/{invoice}/pay"]]
    assert (second["sessions"], second["labels"], second["already_imported"]) == (3, 0, 9)
    counts = OnlineTransitions(ResilientStore(CacheSettings(redis_url=redis_server.url, key_prefix=prefix)), 0.1,
                               RecallSettings(per_key=0))
    assert counts.next_counts(first["spec_id"], "GET /invoices/{invoice}") == {"POST /invoices/{invoice}/pay": 3}
    # The job wrote its report where GET /admin/import/{job_id} reads reports.
    reports = [json.loads(p.read_text()) for p in (tmp_path / "imports").glob("import-*/report.json")]
    assert sorted(r["labels"] for r in reports) == [0, 9]
