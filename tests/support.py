"""What the tests share besides fixtures: paths of the fixtures, the tiny training corpus, a canned HTTP server,
a throwaway Redis, `poll`. Imported as `from tests.support import ...`; the fixtures are in tests/conftest.py."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.settings import PROJECT_ROOT

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"
# The gate's TMDB cases ship with the code (train/devsets); tests use them as the dev set too.
TMDB_SPEC = PROJECT_ROOT / "train" / "devsets" / "tmdb_oas.json"
TMDB_CASES = TMDB_SPEC.with_name("tmdb_cases.jsonl")
# CLI arguments for the tiny test models' embedder (the packaged MiniLM), whatever embedder.model_dir says.
PACKAGED = ["--embedder", "packaged"]
MONITORING = PROJECT_ROOT / "k8s" / "monitoring"


def monitoring_queries() -> dict[str, str]:
    """Every PromQL expression of the Grafana dashboard and the alert rules, by where it is."""
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    found = {f"panel {p['title']!r} {t['refId']}": t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])}
    found.update({f"annotation {a['name']!r}": a["expr"] for a in dashboard["annotations"]["list"]})
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())["spec"]["groups"]
    found.update({f"alert {r['alert']}": r["expr"] for group in rules for r in group["rules"]})
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (ours and Ray's all start with `ray_`)."""
    return set(re.findall(r"\b(ray_[A-Za-z0-9_]+)", expr))


def poll(condition: Any, timeout_s: float = 30) -> Any:
    """`condition()`'s first true value, checked every 0.2 s; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout_s} s")


class SpecServer:
    """A real HTTP server on 127.0.0.1 with canned routes: `routes[path] = (status, headers, body)`."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                status, headers, body = server.routes.get(self.path, (404, {}, b"not found"))
                etag = headers.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    status, body = 304, b""
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# Each client's pause between requests where a job or a restart shares the two cores with a load: about 30
# requests/s from four clients. Closed-loop clients would only slow the job down; a swap under traffic is the subject.
PACE_S = 0.1

TRAINING_FIXTURES = {
    "specs": ["events_oas31.json"],
    "apisguru": ["billing_oas30.yaml", "pets_swagger2.yaml"],
    "apisguru_real": [
        "adyen.com__PayoutService__30__openapi.yaml",
        "posty-api.herokuapp.com__v1__swagger.yaml",
        "googleapis.com__libraryagent__v1__openapi.yaml",  # hashes into the validation split
    ],
}


class RedisServer:
    """A real Redis for tests: a throwaway `redis-server` we own (so a test may stop and restart it), else the
    machine's server on 127.0.0.1:6379 with a dedicated DB number (then it cannot be stopped)."""

    DEDICATED_DB = 13

    def __init__(self, durable_dir: Path | None = None) -> None:
        """`durable_dir`: an append-only file there, fsynced on every write (a killed server loses nothing)."""
        import shutil

        self.binary = shutil.which("redis-server")
        self.process = None
        self.durable_dir = durable_dir
        if self.binary:
            from ops.cluster import free_port

            self.port = free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
            self.start()
        elif self._reachable("redis://127.0.0.1:6379/0"):
            self.port = 6379
            self.url = f"redis://127.0.0.1:6379/{self.DEDICATED_DB}"
            self.client().flushdb()
        else:
            pytest.fail("tests need Redis: install redis-server or run one on 127.0.0.1:6379")

    @property
    def owned(self) -> bool:
        return self.binary is not None

    @staticmethod
    def _reachable(url: str) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        import subprocess
        import time

        assert self.binary
        persistence = ["--appendonly", "no"]
        if self.durable_dir is not None:
            persistence = ["--dir", str(self.durable_dir), "--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._reachable(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError("throwaway redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost node would."""
        assert self.process is not None, "only a redis-server this test run started can be killed"
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None


class FakeS3:
    """A fake S3: moto's S3 server on a free local port, standing in for an object store, which cannot run on this
    machine (no object store, no network to one). pyarrow reaches it as it reaches S3, by URI: `uri(key)` names
    an object with the endpoint and credentials in it, as a user would write them for an S3-compatible store."""

    BUCKET = "traffic-logs"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self._endpoint = f"http://{host}:{port}"
        self._filesystem(allow_bucket_creation=True).create_dir(self.BUCKET)

    def uri(self, key: str) -> str:
        return f"s3://key:secret@{self.BUCKET}/{key}?endpoint_override={self._endpoint}"

    def put(self, key: str, data: bytes) -> str:
        with self._filesystem().open_output_stream(f"{self.BUCKET}/{key}") as out:
            out.write(data)
        return self.uri(key)

    def _filesystem(self, allow_bucket_creation: bool = False):
        from pyarrow import fs

        creating = "&allow_bucket_creation=true" if allow_bucket_creation else ""
        return fs.FileSystem.from_uri(self.uri("") + creating)[0]

    def stop(self) -> None:
        self._server.stop()
