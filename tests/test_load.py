"""The load generator of bench, the demo and the swap tests, against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ops.load import RequestLoop


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[int]]]:
    """Answers every POST with 200 and a model version, except request n = 3 (500); records the n it saw."""
    seen: list[int] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            n = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["n"]
            with lock:
                seen.append(n)
            body = json.dumps({"model_version": "v1"}).encode()
            self.send_response(500 if n == 3 else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/predict", seen
    httpd.shutdown()
    httpd.server_close()


def test_a_bounded_loop_sends_each_request_once_and_summarises(echo_server: tuple[str, list[int]]) -> None:
    url, seen = echo_server
    with RequestLoop(url, lambda client, n: {"n": n}, clients=3, total=20) as loop:
        loop.wait()
    assert sorted(seen) == list(range(20))  # every request of the sequence, none twice, over three clients
    summary = loop.summary()
    assert summary["requests"] == 20 and summary["errors"] == {"500": 1}
    assert summary["requests_per_s"] > 0 and summary["p50_ms"] <= summary["p99_ms"]
    assert loop.seen("v1") and loop.report("v1", since=0)["failed"] == 1
