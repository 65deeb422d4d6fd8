"""The load generator of bench, the demo and the swap tests, against a real local HTTP server."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ops.load import RequestLoop, Sample, outcome
from ops.startwatch import StartReport, start_report


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[int]]]:
    """Answers every POST with 200 and a model version, except request n = 3 (500); records the n it saw."""
    seen: list[int] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
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


def test_a_paused_loop_waits_between_requests(echo_server: tuple[str, list[int]]) -> None:
    url, _ = echo_server
    with RequestLoop(url, lambda client, n: {"n": n}, clients=1, total=5, pause_s=0.2) as loop:
        loop.wait()
    sent = sorted(s.sent for s in loop.samples)
    assert len(sent) == 5 and min(b - a for a, b in itertools.pairwise(sent)) >= 0.2


def test_a_start_timeline_counts_from_the_first_answer_and_names_each_version() -> None:
    """Before the first answer the service is not up (connection refused): not a failure. After it, every request
    counts; each version's time is when its first answer arrived, and the last answer of an older one shows how
    long the swap overlapped."""
    samples = [
        Sample(100.0, 5.0, "ConnectError", None),
        Sample(101.0, 1000.0, 200, "m/v1"),  # answered at 102.0
        Sample(103.0, 10.0, 503, None),
        Sample(110.0, 500.0, 200, "m/v2"),  # answered at 110.5
        Sample(110.2, 400.0, 200, "m/v1"),  # sent before the swap, answered after the new one's first
        Sample(111.0, 10.0, 200, "m/v2"),
    ]
    report = start_report(samples, started=100.0)
    assert report.first_answer_s == 2.0 and report.versions == {"m/v1": 2.0, "m/v2": 10.5}
    assert report.last_old_version_s == 10.6
    assert report.outcome["requests"] == 5 and report.outcome["failed"] == 1 and report.outcome["failures"] == ["503"]
    assert not report.passed
    assert start_report(samples[:1], started=100.0) == StartReport(None, outcome=outcome([]))
