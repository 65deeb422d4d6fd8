"""Ids a call's response holds, for the calls after it: `POST /v1/customers` answers `{"id": "cus_123", ...}`, and
`GET /v1/customers/{customer}/payment_methods` can then be filled although no path and no prompt named the id.

From the response body an event carries (`Event.response`): its top-level `id` (and `number`, `uuid`, `key`,
`slug`) belong to the entity the call produces (what it creates, reads or lists, `OpProfile.produces`, when that
is one entity some path parameter takes); a field named as an id (`customer_id`, `invoiceId`) or as such an entity
(`"customer": "cus_9"`, `"server": {"id": 42}`) is that entity's id; a list's first item (`data`, `items`,
`results` or the body itself) stands for the list.
"""

from __future__ import annotations

from typing import Any

from pipeline.ranking.text import head
from pipeline.spec.catalogue import is_id_name
from pipeline.spec.matching import split_path

_LIST_KEYS = ("data", "items", "results")
_OWN_KEYS = ("id", "number", "uuid", "key", "slug")
_MAX_ID_CHARS = 128


def produced_entity(path: str, produces: frozenset[str], entities: frozenset[str]) -> str | None:
    """The one entity a call's response is, among those a later call can take: its last literal segment's
    (`/v1/payment_intents` -> `intent`), else the only one it produces."""
    literals = [segment for segment in split_path(path) if not segment.startswith("{")]
    if literals and head(literals[-1]) in entities:
        return head(literals[-1])
    produced = produces & entities
    return next(iter(produced)) if len(produced) == 1 else None


def response_ids(response: Any, thing: str | None, entities: frozenset[str]) -> dict[str, str]:
    """Field name (or, for the top-level id, `thing`: the entity the call produced) -> value, for the values that
    look like ids."""
    body = _first_item(response)
    if not isinstance(body, dict):
        return {}
    found: dict[str, str] = {}
    for name, raw in body.items():
        if isinstance(raw, dict) and head(name) in entities:  # {"server": {"id": 42, ...}}: the server's id
            raw = raw.get("id")
        value = id_value(raw)
        if value is None:
            continue
        if thing is not None and name in _OWN_KEYS:
            # The thing's own keys, under the names its parameters take: `{invoice}`, `{release_id}`, and
            # `{issue_number}` from an issue's `number` (GitHub's issues have an `id` too, which no path takes).
            found[f"{thing}_{name}"] = value
            if name == "id":
                found[thing] = value
        elif name != "id" and (is_id_name(name) or head(name) in entities):
            found[name] = value
    return found


def _first_item(response: Any) -> Any:
    if isinstance(response, list):
        return response[0] if response else None
    if isinstance(response, dict):
        for key in _LIST_KEYS:
            items = response.get(key)
            if isinstance(items, list) and items and isinstance(items[0], dict) and "id" not in response:
                return items[0]
    return response


def id_value(value: Any) -> str | None:
    """An id: a string without spaces, or an integer (not a flag, not a quantity written as a float)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= _MAX_ID_CHARS and not any(c.isspace() for c in value):
        return value
    return None
