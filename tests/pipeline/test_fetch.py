from __future__ import annotations

import json
import socket

import pytest

from pipeline.errors import RefusedAddressError, SpecTooLargeError, UnreachableError, UnsupportedSchemeError
from pipeline.settings import FetchSettings
from pipeline.spec.fetch import fetch_url
from pipeline.spec.load import load_catalogue
from tests.support import FIXTURES, SpecServer

SPEC = (FIXTURES / "events_oas31.json").read_bytes()


@pytest.fixture(autouse=True)
def routes(spec_server: SpecServer) -> None:
    spec_server.routes.update(
        {
            "/spec.json": (200, {"ETag": '"v1"', "Content-Type": "application/json"}, SPEC),
            "/moved": (302, {"Location": "/spec.json"}, b""),
            "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/to-private": (301, {"Location": "http://10.0.0.8/spec.json"}, b""),
            "/big.json": (200, {}, json.dumps({"pad": "x" * 5000}).encode()),
            "/error": (500, {}, b"boom"),
        }
    )


def test_fetch_by_url_and_follow_redirect(spec_server: SpecServer, local_fetch: FetchSettings) -> None:
    catalogue = load_catalogue(spec_server.url("/moved"), local_fetch)
    assert len(catalogue.operations) == 3


def test_conditional_request_gets_not_modified(spec_server: SpecServer, local_fetch: FetchSettings) -> None:
    first = fetch_url(spec_server.url("/spec.json"), local_fetch)
    assert first.etag == '"v1"' and first.body == SPEC
    again = fetch_url(spec_server.url("/spec.json"), local_fetch, etag=first.etag)
    assert again.not_modified and again.body is None


def test_loopback_refused_unless_allowed(spec_server: SpecServer) -> None:
    with pytest.raises(RefusedAddressError, match="non-public address"):
        fetch_url(spec_server.url("/spec.json"), FetchSettings())


def test_redirect_to_metadata_address_refused(spec_server: SpecServer, local_fetch: FetchSettings) -> None:
    with pytest.raises(RefusedAddressError, match="169.254.169.254"):
        fetch_url(spec_server.url("/to-metadata"), local_fetch)
    with pytest.raises(RefusedAddressError, match="10.0.0.8"):
        fetch_url(spec_server.url("/to-private"), local_fetch)
    # Nothing was requested from the refused hosts: only the two redirects reached our server.
    assert [p for p, _ in spec_server.requests[-2:]] == ["/to-metadata", "/to-private"]


def test_every_resolved_address_is_checked(
    spec_server: SpecServer, local_fetch: FetchSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with one allowed and one private answer is refused. This machine's DNS cannot serve such a
    name, so the resolver is patched for that one made-up host only."""
    real_getaddrinfo = socket.getaddrinfo

    def two_answers(host: str, *args: object, **kwargs: object) -> list:
        if host == "split-horizon.test":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", spec_server.port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.20", spec_server.port)),
            ]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", two_answers)
    with pytest.raises(RefusedAddressError, match="192.168.1.20"):
        fetch_url(f"http://split-horizon.test:{spec_server.port}/spec.json", local_fetch)


def test_size_cap_and_errors(spec_server: SpecServer, local_fetch: FetchSettings) -> None:
    small = local_fetch.model_copy(update={"max_bytes": 1000})
    with pytest.raises(SpecTooLargeError, match="1000 byte limit"):
        fetch_url(spec_server.url("/big.json"), small)
    with pytest.raises(UnreachableError, match="HTTP 500"):
        fetch_url(spec_server.url("/error"), local_fetch)
    with pytest.raises(UnsupportedSchemeError, match="only http"):
        fetch_url("file:///etc/passwd", local_fetch)
    with pytest.raises(UnsupportedSchemeError, match="only http"):
        fetch_url("ftp://example.org/spec.json", local_fetch)
    with pytest.raises(UnreachableError, match="cannot resolve host"):
        fetch_url("http://no-such-host.invalid/spec.json", local_fetch)


def test_connection_refused_is_unreachable(local_fetch: FetchSettings) -> None:
    with pytest.raises(UnreachableError, match="cannot fetch"):
        fetch_url("http://127.0.0.1:9/spec.json", local_fetch)  # discard port: nothing listens
