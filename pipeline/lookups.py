"""Reads whose miss is an answer to the client ("unknown spec_id", "unknown prediction_id").

A replica's shared store skips Redis for a while after a failure and serves from its own memory meanwhile; for
a cache that is right, but a miss there would tell a client that a spec it registered, or a prediction another
replica made, does not exist. So such a read asks Redis again once it answers, and says "retry" while it cannot.
"""

from __future__ import annotations

from pipeline.cache import SharedStore
from pipeline.errors import SharedStoreDownError


def lookup(store: SharedStore, key: str, what: str) -> bytes | None:
    """The value of `key`, or None when it does not exist; SharedStoreDownError when that cannot be known."""
    raw = store.get(key)
    if raw is not None or not store.configured:
        return raw
    if not store.ping():
        raise SharedStoreDownError(f"{what} is not held by this replica and the shared store is unreachable: "
                                   "retry after the Retry-After delay")
    raw = store.get(key)
    if raw is None and store.recently_down():
        # Another replica writes what it kept during the outage at its first call after its own back-off.
        raise SharedStoreDownError(f"{what} is not in the shared store yet: it was unreachable moments ago and "
                                   "what replicas wrote meanwhile is still on its way; retry after the Retry-After "
                                   "delay")
    return raw
