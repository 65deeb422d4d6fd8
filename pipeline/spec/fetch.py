"""Fetching specs by URL without becoming an SSRF proxy.

Every hop (the first URL and each redirect) is resolved once, *every* address the name resolves to must be
public (or explicitly allowed), and the connection then goes to the checked address, so a DNS answer that
changes between check and connect (rebinding) cannot reach an internal host.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

import urllib3

from pipeline.errors import RefusedAddressError, SpecTooLargeError, UnreachableError, UnsupportedSchemeError
from pipeline.settings import FetchSettings

_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched document, or a 304 confirmation that the caller's cached copy is still current."""

    url: str
    body: bytes | None  # None when not_modified
    etag: str | None
    last_modified: str | None
    not_modified: bool = False


def _is_allowed(address: str, allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    if any(ip in net for net in allow):
        return True
    return ip.is_global and not ip.is_multicast


def resolve_checked(host: str, port: int, settings: FetchSettings) -> str:
    """Resolve `host` and return an address to connect to, refusing if *any* resolved address is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnreachableError(f"cannot resolve host {host!r}: {exc.strerror}; check the URL") from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    allow = settings.allow_networks()
    refused = [a for a in addresses if not _is_allowed(a, allow)]
    if refused:
        raise RefusedAddressError(
            f"refusing to fetch from {host!r}: it resolves to non-public address(es) {', '.join(refused)}; "
            "use a public URL or send the spec inline"
        )
    return addresses[0]


def fetch_url(
    url: str,
    settings: FetchSettings,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    """GET `url` with redirects, time-outs, a size cap and address checks on every hop.

    `etag` / `last_modified` make the request conditional; a 304 comes back as `Fetched(not_modified=True)`.
    """
    current = url
    for _ in range(settings.max_redirects + 1):
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https"):
            raise UnsupportedSchemeError(
                f"only http(s) spec URLs are fetched, got {parts.scheme or 'no'} scheme in {current!r}"
            )
        if not parts.hostname:
            raise UnsupportedSchemeError(f"spec URL {current!r} has no host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = resolve_checked(parts.hostname, port, settings)
        headers = {"Host": parts.netloc, "Accept": "application/json, application/yaml, text/yaml, */*"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        response = _request(parts.scheme, address, port, parts.hostname, _target(parts), headers, settings)
        try:
            if response.status in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise UnreachableError(f"{current} answered {response.status} without a Location header")
                current = urljoin(current, location)
                continue
            if response.status == 304:
                return Fetched(current, None, etag, last_modified, not_modified=True)
            if not 200 <= response.status < 300:
                raise UnreachableError(f"{current} answered HTTP {response.status}; check the URL")
            body = _read_capped(response, settings.max_bytes)
            return Fetched(current, body, response.headers.get("ETag"), response.headers.get("Last-Modified"))
        finally:
            response.release_conn()
    raise UnreachableError(f"more than {settings.max_redirects} redirects fetching {url}")


def _target(parts: SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _request(
    scheme: str,
    address: str,
    port: int,
    hostname: str,
    target: str,
    headers: dict[str, str],
    settings: FetchSettings,
) -> urllib3.BaseHTTPResponse:
    timeout = urllib3.Timeout(connect=settings.connect_timeout_s, read=settings.read_timeout_s)
    # Connect to the checked address; TLS still verifies the certificate against the real host name.
    pool: urllib3.HTTPConnectionPool
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, timeout=timeout, server_hostname=hostname, retries=False)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    try:
        return pool.urlopen(
            "GET", target, headers=headers, redirect=False, preload_content=False, assert_same_host=False
        )
    except urllib3.exceptions.HTTPError as exc:
        raise UnreachableError(f"cannot fetch {scheme}://{hostname}{target}: {exc}") from exc


def _read_capped(response: urllib3.BaseHTTPResponse, limit: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise SpecTooLargeError(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.stream(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise SpecTooLargeError(size, limit)
            chunks.append(chunk)
    except urllib3.exceptions.HTTPError as exc:
        raise UnreachableError(f"connection failed while reading the spec: {exc}") from exc
    return b"".join(chunks)
