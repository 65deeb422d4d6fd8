"""Readers of the traffic teams already have, each yielding `Observed` requests; the format is detected.

- **HAR 1.2** (browser DevTools, Postman, Insomnia, Charles, mitmproxy): `log.entries`, streamed, then sorted by
  `startedDateTime` (exports are often out of order). Who: the `Authorization` header, else the `Cookie` header
  (as credentials), else the user agent. JSON response bodies (base64 decoded) are kept when small.
- **OpenTelemetry** spans as OTLP JSON (a collector's file exporter: one `{"resourceSpans": ...}` per line): every
  span with an HTTP method (`http.request.method`, or the older `http.method`), `url.path` / `url.full` (or
  `http.target` / `http.url`), `http.route`, `http.response.status_code` (or `http.status_code`), `session.id`,
  `user.id` / `enduser.id`, `client.address`, `user_agent.original`. A client span and the server span of the same
  request (one trace, one method and path) count once.
- **JSON Lines access logs**, one object per line, by the first mapping whose fields it has:
  Kong's file-log (`request.method`, `request.uri`, `response.status`, `started_at`, `consumer.id` / `username`,
  `authenticated_entity.id`, `client_ip`, `request.headers.authorization`, `request.headers.user-agent`);
  AWS API Gateway `$context` fields, nested or dotted (`httpMethod`, `path`, `resourcePath` or `routeKey` as the
  route, `status`, `requestTimeEpoch` / `requestTime`, `authorizer.claims.sub` / `authorizer.principalId` /
  `identity.cognitoIdentityId` / `identity.user`, `identity.sourceIp`, `identity.userAgent`);
  Envoy's JSON log and a generic layout (`time` / `timestamp` / `start_time`, `method`, `url` / `path`, `status` /
  `response_code`, `route`, `session` / `session_id`, `user` / `user_id`, `client` / `ip` /
  `downstream_remote_address`, `user_agent`, `authority` / `host`).
- **nginx / Apache combined** lines: `addr - user [time] "METHOD /path HTTP/1.1" status bytes "referer" "agent"`.

Gzipped files are read as they are, from a path or a URI of any filesystem pyarrow reads (`file://`, `s3://`,
`gs://`, `hdfs://`). A line that is not UTF-8, not JSON, or lacks a method or path is counted and
skipped; a truncated HAR keeps the entries before the cut. Nothing here aborts the rest of the file.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

import ijson
import msgspec

from pipeline.traffic.observed import Identity, Observed, epoch, small_json, split_url

Format = Literal["har", "otlp", "jsonl", "combined"]
FORMATS: tuple[Format, ...] = ("har", "otlp", "jsonl", "combined")
_SNIFF_BYTES = 64 * 1024
# Client and server spans of one request are deduplicated among the latest this many requests' keys.
_SPAN_MEMORY = 100_000

_COMBINED = re.compile(
    r'^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<url>\S+)[^"]*" '
    r'(?P<status>\d{3}) \S+(?: "[^"]*" "(?P<agent>[^"]*)")?'
)


class Tally(Counter[str]):
    """What reading met besides requests: `garbage`, `not_utf8`, `truncated`, `no_time`, ... by count."""


Location = str | Path  # a local path, or a URI (`s3://bucket/logs/access-01.jsonl.gz`)


def _raw(location: Location) -> io.BufferedReader:
    if isinstance(location, str) and "://" in location:
        from pyarrow import fs

        filesystem, inside = fs.FileSystem.from_uri(location)
        # pyarrow would decompress by the file's extension; the magic bytes decide here, as for a local file.
        return io.BufferedReader(filesystem.open_input_stream(inside, compression=None))  # type: ignore[arg-type]
    return Path(location).open("rb")


@contextmanager
def open_traffic(location: Location) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it is gzipped (told by its first bytes, not its name)."""
    with _raw(location) as raw:
        if raw.peek(2)[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield raw


def detect(location: Location) -> Format:
    """The format of a traffic file, from its first bytes."""
    with open_traffic(location) as handle:
        head = handle.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
    stripped = head.lstrip()
    if '"resourceSpans"' in head:
        return "otlp"
    if stripped.startswith("{") and re.search(r'"log"\s*:\s*\{', head) and '"entries"' in head:
        return "har"
    if stripped.startswith("{"):
        return "jsonl"
    return "combined"


def read_traffic(location: Location, identity: Identity, tally: Tally, fmt: Format | None = None) -> Iterator[Observed]:
    """Every request the file records, in the file's order (HAR: in time order)."""
    readers: dict[Format, Callable[[IO[bytes], Identity, Tally], Iterator[Observed]]] = {
        "har": _har, "otlp": _otlp, "jsonl": _jsonl, "combined": _combined,
    }
    with open_traffic(location) as handle:
        yield from readers[fmt or detect(location)](handle, identity, tally)


def _lines(handle: IO[bytes], tally: Tally) -> Iterator[str]:
    for raw in handle:
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            tally["not_utf8"] += 1
            continue
        if line:
            yield line


def _objects(handle: IO[bytes], tally: Tally) -> Iterator[dict[str, Any]]:
    for line in _lines(handle, tally):
        try:
            record = msgspec.json.decode(line)  # a log has millions of lines: json.loads was its slowest step
        except msgspec.DecodeError:
            tally["garbage"] += 1
            continue
        if isinstance(record, dict):
            yield record
        else:
            tally["garbage"] += 1


def _get(record: dict[str, Any], dotted: str) -> Any:
    """`a.b.c` nested, or as one flattened key (`"identity.sourceIp": ...`), or partly each."""
    if dotted in record:
        return record[dotted]
    head, _, rest = dotted.partition(".")
    while rest:
        value = record.get(head)
        if isinstance(value, dict):
            found = _get(value, rest)
            if found is not None:
                return found
        more, _, rest = rest.partition(".")
        head = f"{head}.{more}"
    return None


def _first(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = _get(record, name) if "." in name else record.get(name)
        if value not in (None, "", "-"):
            return value
    return None


def _status(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _observed(
    tally: Tally, identity: Identity, *, time: Any, method: Any, url: Any, status: Any = None, route: Any = None,
    session: Any = None, user: Any = None, credential: Any = None, client: Any = None, agent: Any = None,
    host: Any = None, response: dict[str, Any] | list[Any] | None = None,
) -> Observed | None:
    if not method or not url:
        tally["no_method_or_path"] += 1
        return None
    moment = epoch(time)
    if moment is None:
        tally["no_time"] += 1
        return None
    url_host, path = split_url(str(url))
    key, kind = identity.key(_text(session), _text(user), _text(credential), _text(client), _text(agent))
    return Observed(moment, str(method).upper(), path, url_host or str(host or "").split(":")[0], _status(status),
                    _text(route), key, kind, response)


# --- HAR ---------------------------------------------------------------------------------------------------------

def _header(headers: Any, name: str) -> str | None:
    for header in headers if isinstance(headers, list) else []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == name:
            return _text(header.get("value"))
    return None


def _har_response(content: Any) -> dict[str, Any] | list[Any] | None:
    if not isinstance(content, dict) or "json" not in str(content.get("mimeType", "")):
        return None
    text = content.get("text")
    if content.get("encoding") == "base64" and isinstance(text, str):
        try:
            text = base64.b64decode(text).decode("utf-8")
        except ValueError:
            return None
    return small_json(text if isinstance(text, str) else None)


def _har(handle: IO[bytes], identity: Identity, tally: Tally) -> Iterator[Observed]:
    found: list[Observed] = []
    try:
        for entry in ijson.items(handle, "log.entries.item", use_float=True):
            request = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(request, dict):
                tally["garbage"] += 1
                continue
            response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
            headers = request.get("headers")
            observed = _observed(
                tally, identity, time=entry.get("startedDateTime"), method=request.get("method"),
                url=request.get("url"), status=response.get("status") or None,
                credential=_header(headers, "authorization") or _header(headers, "cookie"),
                agent=_header(headers, "user-agent"), response=_har_response(response.get("content")),
            )
            if observed is not None:
                found.append(observed)
    except ijson.JSONError:
        tally["truncated"] += 1
    found.sort(key=lambda o: o.time)
    yield from found


# --- OpenTelemetry -----------------------------------------------------------------------------------------------

_SERVER, _CLIENT = 2, 3


def _attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            continue
        value = item["value"]
        for kind in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if kind in value:
                out[str(item.get("key"))] = value[kind]
                break
    return out


def _otlp(handle: IO[bytes], identity: Identity, tally: Tally) -> Iterator[Observed]:
    seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
    for document in _objects(handle, tally):
        for resource_spans in document.get("resourceSpans") or []:
            resource = _attributes((resource_spans.get("resource") or {}).get("attributes"))
            for scope in resource_spans.get("scopeSpans") or []:
                for span in scope.get("spans") or []:
                    if span.get("kind") not in (_SERVER, _CLIENT, "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT"):
                        continue
                    attrs = {**resource, **_attributes(span.get("attributes"))}
                    method = _first(attrs, "http.request.method", "http.method")
                    if method is None:
                        continue
                    url = _first(attrs, "url.full", "url.path", "http.url", "http.target")
                    request = (str(span.get("traceId")), str(method), split_url(str(url or ""))[1])
                    if request in seen:
                        tally["duplicate_span"] += 1
                        continue
                    seen[request] = None
                    if len(seen) > _SPAN_MEMORY:
                        seen.popitem(last=False)
                    observed = _observed(
                        tally, identity, time=span.get("startTimeUnixNano"), method=method, url=url,
                        status=_first(attrs, "http.response.status_code", "http.status_code"),
                        route=_first(attrs, "http.route"), session=_first(attrs, "session.id"),
                        user=_first(attrs, "user.id", "enduser.id"),
                        client=_first(attrs, "client.address", "net.peer.ip"),
                        agent=_first(attrs, "user_agent.original", "http.user_agent"),
                        host=_first(attrs, "server.address", "http.host"),
                    )
                    if observed is not None:
                        yield observed


# --- JSON Lines access logs --------------------------------------------------------------------------------------

def _route_key(value: Any) -> str | None:
    """API Gateway's HTTP API `routeKey` is `GET /pets/{id}` (or `$default`); its REST API `resourcePath` a path."""
    if not isinstance(value, str) or not value or value.startswith("$"):
        return None
    return value.split(" ", 1)[1] if " " in value else value


def _kong(record: dict[str, Any], identity: Identity, tally: Tally) -> Observed | None:
    request, response = record["request"], record.get("response") or {}
    headers = request.get("headers") if isinstance(request.get("headers"), dict) else {}
    return _observed(
        tally, identity, time=record.get("started_at"), method=request.get("method"),
        url=request.get("url") or request.get("uri"), status=response.get("status"),
        user=_first(record, "consumer.id", "consumer.username", "authenticated_entity.id"),
        credential=headers.get("authorization"), client=record.get("client_ip"), agent=headers.get("user-agent"),
    )


def _api_gateway(record: dict[str, Any], identity: Identity, tally: Tally) -> Observed | None:
    return _observed(
        tally, identity, time=_first(record, "requestTimeEpoch", "requestTime"), method=record.get("httpMethod"),
        url=_first(record, "path", "resourcePath"), status=record.get("status"),
        route=_route_key(_first(record, "resourcePath", "routeKey")),
        user=_first(record, "authorizer.claims.sub", "authorizer.principalId", "identity.cognitoIdentityId",
                    "identity.user"),
        client=_first(record, "identity.sourceIp", "sourceIp"),
        agent=_first(record, "identity.userAgent", "userAgent"), host=record.get("domainName"),
    )


def _generic(record: dict[str, Any], identity: Identity, tally: Tally) -> Observed | None:
    return _observed(
        tally, identity, time=_first(record, "time", "timestamp", "@timestamp", "start_time", "ts"),
        method=_first(record, "method", "request_method", "http_method"),
        url=_first(record, "url", "path", "uri", "request_uri"),
        status=_first(record, "status", "response_code", "status_code"), route=_first(record, "route"),
        session=_first(record, "session", "session_id"), user=_first(record, "user", "user_id"),
        client=_first(record, "client", "ip", "client_ip", "remote_addr", "downstream_remote_address"),
        agent=_first(record, "user_agent", "agent"), host=_first(record, "authority", "host"),
    )


def _jsonl(handle: IO[bytes], identity: Identity, tally: Tally) -> Iterator[Observed]:
    for record in _objects(handle, tally):
        if isinstance(record.get("request"), dict):
            observed = _kong(record, identity, tally)
        elif "httpMethod" in record:
            observed = _api_gateway(record, identity, tally)
        else:
            observed = _generic(record, identity, tally)
        if observed is not None:
            yield observed


# --- nginx / Apache combined -------------------------------------------------------------------------------------

def _combined(handle: IO[bytes], identity: Identity, tally: Tally) -> Iterator[Observed]:
    for line in _lines(handle, tally):
        found = _COMBINED.match(line)
        if found is None:
            tally["garbage"] += 1
            continue
        user = found["user"] if found["user"] != "-" else None
        observed = _observed(tally, identity, time=found["time"], method=found["method"], url=found["url"],
                             status=found["status"], user=user, client=found["client"], agent=found["agent"])
        if observed is not None:
            yield observed
