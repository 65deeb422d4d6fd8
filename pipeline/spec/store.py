"""Specs by URL, inline body or id, cached so that a request never re-parses a spec it has seen.

Keys in the shared store:
- `url:<sha of URL>`   -> the content hash behind a URL with its validators (ETag / Last-Modified) and when it
  was last checked. Fresh for `spec_ttl_s`; after that a conditional GET revalidates it (304 keeps it), and if
  the origin fails the stale copy is still served (logged): an outage elsewhere must not break predictions.
- `cat:<content hash>` -> the parsed catalogue as JSON. The content hash is the public `spec_id`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from pipeline.cache import LRU, SharedStore
from pipeline.errors import FetchError, SpecNotFoundError
from pipeline.lookups import lookup
from pipeline.settings import CacheSettings, FetchSettings
from pipeline.spec.catalogue import Catalogue, build_catalogue
from pipeline.spec.fetch import fetch_url
from pipeline.spec.source import parse_bytes, read_spec

log = logging.getLogger(__name__)

# hit: parsed in this process; shared: from the shared store; miss: fetched and parsed; inline: parsed from a
# request body; revalidated: a 304 kept the cached copy; stale: served after a failed revalidation.
Lookup = Literal["hit", "shared", "miss", "inline", "revalidated", "stale"]


class SpecInfo(BaseModel):
    """What a client learns about a registered spec."""

    spec_id: str
    title: str
    version: str
    openapi: str
    operations: int
    source: str

    @classmethod
    def of(cls, catalogue: Catalogue) -> SpecInfo:
        return cls(
            spec_id=catalogue.content_hash,
            title=catalogue.title,
            version=catalogue.version,
            openapi=catalogue.openapi,
            operations=len(catalogue.operations),
            source=catalogue.source,
        )


class UrlEntry(BaseModel):
    content_hash: str
    etag: str | None = None
    last_modified: str | None = None
    checked_at: float  # wall clock: shared between replicas


class SpecStore:
    def __init__(
        self,
        blobs: SharedStore,
        cache: CacheSettings,
        fetch: FetchSettings,
        capacity: int = 64,
        on_lookup: Callable[[Lookup], None] | None = None,
    ) -> None:
        """`on_lookup` hears the outcome of every lookup (a metric); `lookups` counts them too."""
        self._blobs = blobs
        self._cache = cache
        self._fetch = fetch
        # Parsed catalogues, so the hot path skips JSON decoding (~10 ms for Stripe).
        self._parsed: LRU[Catalogue] = LRU(capacity)
        self.lookups: Counter[Lookup] = Counter()
        self._on_lookup = on_lookup

    def _looked_up(self, outcome: Lookup) -> None:
        self.lookups[outcome] += 1
        if self._on_lookup is not None:
            self._on_lookup(outcome)

    def register(self, *, url: str | None = None, document: str | dict[str, Any] | None = None) -> Catalogue:
        """A spec URL, or the spec as JSON/YAML text or a parsed object -> its catalogue (cached).

        Spec errors propagate (unsupported URL scheme, refused address, syntax, not a spec, too large)."""
        if url is not None:
            return self._from_url(url)
        if document is None:
            raise SpecNotFoundError("no spec given: send spec_url, spec or spec_id")
        self._looked_up("inline")
        if isinstance(document, dict):
            return self._store(build_catalogue(read_spec(document, self._fetch)))
        # Text from a client is always a document, never a path: the server's files are not a spec source.
        return self._store(build_catalogue(parse_bytes(document.encode(), "inline", self._fetch.max_bytes)))

    def catalogue(self, spec_id: str) -> Catalogue:
        parsed = self._parsed.get(spec_id)
        if parsed is not None:
            self._looked_up("hit")
            return parsed
        raw = lookup(self._blobs, f"cat:{spec_id}", f"spec {spec_id!r}")
        if raw is None:
            raise SpecNotFoundError(
                f"unknown spec_id {spec_id!r}: register the spec with POST /specs or send spec_url / spec instead"
            )
        self._looked_up("shared")
        return self._remember(Catalogue.model_validate_json(raw))

    def _remember(self, catalogue: Catalogue) -> Catalogue:
        self._parsed.set(catalogue.content_hash, catalogue)
        return catalogue

    def _store(self, catalogue: Catalogue) -> Catalogue:
        key = f"cat:{catalogue.content_hash}"
        if self._blobs.get(key) is None:
            self._blobs.set(key, catalogue.model_dump_json().encode(), self._cache.catalogue_ttl_s)
        return self._remember(catalogue)

    def _from_url(self, url: str) -> Catalogue:
        key = "url:" + hashlib.sha256(url.encode()).hexdigest()[:32]
        raw = self._blobs.get(key)
        entry = UrlEntry.model_validate_json(raw) if raw else None
        if entry is not None and time.time() - entry.checked_at < self._cache.spec_ttl_s:
            try:
                return self.catalogue(entry.content_hash)
            except SpecNotFoundError:
                entry = None  # the catalogue expired before the URL entry: fetch again
        try:
            fetched = fetch_url(url, self._fetch, entry.etag if entry else None, entry.last_modified if entry else None)
        except FetchError as exc:
            if entry is None:
                raise
            self._looked_up("stale")
            log.warning("revalidating %s failed (%s); serving the copy checked at %s", url, exc, entry.checked_at)
            return self.catalogue(entry.content_hash)
        if fetched.not_modified and entry is not None:
            self._looked_up("revalidated")
            catalogue = self.catalogue(entry.content_hash)
        else:
            assert fetched.body is not None
            self._looked_up("miss")
            catalogue = self._store(build_catalogue(parse_bytes(fetched.body, url, self._fetch.max_bytes)))
        fresh = UrlEntry(
            content_hash=catalogue.content_hash,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            checked_at=time.time(),
        )
        # Kept well past its freshness so the validators can still be used for a conditional request.
        self._blobs.set(key, fresh.model_dump_json().encode(), self._cache.spec_ttl_s * 24)
        return catalogue
