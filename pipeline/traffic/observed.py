"""One request as traffic records it, before sessions and matching: what every reader yields.

Readers keep only what learning next calls needs: when, the method and URL path, the status, the route a server
or gateway already resolved, who made it (as hashes, never raw), and a JSON response small enough for an event.
Query strings, headers, cookies and request bodies are never kept: they hold tokens and passwords, and a
prediction's history needs none of them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

# A response kept with its call fills the parameters of later calls; larger ones are dropped, as /predict refuses
# them.
from pipeline.ranking.context import MAX_RESPONSE_BYTES

# Who made a request, strongest first: a session id the client sent, a user the server authenticated, a hash of
# the credential, and last the client's address with its user agent.
KeyKind = Literal["session", "user", "credential", "client"]
_KNOWN_PEOPLE = 100_000  # keys remembered at once (then forgotten all together): bounded memory, few HMACs


@dataclass(frozen=True, slots=True)
class Observed:
    """One request: `key` is an HMAC of who made it (see `Identity`), `path` has no query string."""

    time: float  # seconds since the epoch
    method: str
    path: str
    host: str
    status: int | None
    route: str | None  # a template the server or gateway matched ("/pets/{petId}"), when the record has it
    key: str
    key_kind: KeyKind
    response: dict[str, Any] | list[Any] | None = None


class Identity:
    """Turns the raw values that say who made a request into one keyed hash (HMAC-SHA256 with the deployment's
    secret): equal people get equal keys within a deployment, and nothing stored can be reversed or joined with
    another deployment's data."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._known: dict[tuple[str | None, ...], tuple[str, KeyKind]] = {}  # a person makes many requests

    def key(
        self, session: str | None = None, user: str | None = None, credential: str | None = None,
        client: str | None = None, agent: str | None = None,
    ) -> tuple[str, KeyKind]:
        raw_key = (session, user, credential, client, agent)
        known = self._known.get(raw_key)
        if known is not None:
            return known
        if len(self._known) >= _KNOWN_PEOPLE:
            self._known.clear()
        kind: KeyKind
        if session:
            kind, raw = "session", session
        elif user:
            kind, raw = "user", user
        elif credential:
            kind, raw = "credential", credential
        else:
            kind, raw = "client", f"{client or '-'}\0{agent or '-'}"
        digest = hmac.new(self._secret, f"{kind}\0{raw}".encode(), hashlib.sha256).hexdigest()
        self._known[raw_key] = (digest[:32], kind)
        return digest[:32], kind


def split_url(url: str) -> tuple[str, str]:
    """(host, path) of an absolute URL or a path; the query and fragment are dropped."""
    if url.startswith("/") and not url.startswith("//"):  # a path, as most logs write it: no parsing needed
        return "", url.partition("?")[0].partition("#")[0]
    parts = urlsplit(url)
    return parts.hostname or "", parts.path or "/"


def epoch(value: Any) -> float | None:
    """Seconds since the epoch from what logs write: ISO 8601, the common log format's `28/Nov/2026:13:07:21
    +0000`, or a number in seconds, milliseconds, microseconds or nanoseconds (told apart by size)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
        number = float(value)
        # Seconds now are ~1.8e9: a number past 1e11 (the year 5138 in seconds) is in a finer unit.
        for threshold, per_second in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
            if number > threshold:
                return number / per_second
        return number
    if not isinstance(value, str):
        return None
    text = value.strip()
    for parse in (_iso, _common_log):
        moment = parse(text)
        if moment is not None:
            return moment.timestamp()
    return None


def _iso(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _common_log(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z")
    except ValueError:
        return None


def small_json(text: str | None) -> dict[str, Any] | list[Any] | None:
    """A JSON response body worth keeping: an object or a list within MAX_RESPONSE_BYTES; else None."""
    if not text or len(text) > MAX_RESPONSE_BYTES:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict | list) else None
