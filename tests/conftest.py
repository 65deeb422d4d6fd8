from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.settings import FetchSettings

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"
TMDB_SPEC = REAL / "tmdb_oas.json"
TMDB_CASES = REAL / "tmdb_cases.jsonl"


class SpecServer:
    """A real HTTP server on 127.0.0.1 with canned routes: `routes[path] = (status, headers, body)`."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
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


@pytest.fixture(scope="session")
def spec_server() -> Iterator[SpecServer]:
    server = SpecServer()
    yield server
    server.close()


@pytest.fixture
def local_fetch() -> FetchSettings:
    """Fetch settings that allow exactly 127.0.0.1, as the brief prescribes for tests."""
    return FetchSettings(allow_addresses=["127.0.0.1/32"], connect_timeout_s=2, read_timeout_s=2)
