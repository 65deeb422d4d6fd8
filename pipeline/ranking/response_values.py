"""Ids a call's response holds, for the calls after it: `POST /v1/customers` answers `{"id": "cus_123", ...}`, and
`GET /v1/customers/{customer}/payment_methods` can then be filled although no path and no prompt named the id.

From the response body an event carries (`Event.response`): its top-level `id` (and `number`, `uuid`, `key`,
`slug`) belong to the entity the call produces (what it creates, reads or lists, `OpProfile.produces`, when that
is one entity some path parameter takes); a field named as an id (`customer_id`, `invoiceId`) or as such an entity
(`"customer": "cus_9"`, `"server": {"id": 42}`) is that entity's id; of a list (`data`, `items`, `results`, a
field named as the entity listed, or the body itself), the item the prompt describes stands for it ("close the
docs typo issue" over issues "Crash on start" and "Docs typo"), else its first item; the ids of all its items are
the list a user may work through (`listed_ids`).
"""

from __future__ import annotations

from typing import Any

from pipeline.ranking.text import head, tokens
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


def response_ids(response: Any, thing: str | None, entities: frozenset[str], prompt: str = "") -> dict[str, str]:
    """Field name (or, for the top-level id, `thing`: the entity the call produced) -> value, for the values that
    look like ids; of a list, those of the item `prompt` describes (`item_meant`)."""
    items = _items(response, thing)
    if items is None:
        return _ids_of(response, thing, entities)
    return _ids_of(item_meant(items, prompt), thing, entities) if items else {}


def item_meant(items: list[Any], prompt: str) -> Any:
    """The item whose own words the prompt uses most (a value it quotes whole, an email, counts more than a word:
    a title, a name, a status), when one item alone does; else the first, as a user who opened the list would."""
    if not prompt or len(items) < 2:
        return items[0]
    asked, words = prompt.casefold(), tokens(prompt)
    scores = [_described(item, asked, words) for item in items]
    best = max(scores)
    return items[scores.index(best)] if best > 0 and scores.count(best) == 1 else items[0]


def _described(item: Any, asked: str, words: frozenset[str]) -> int:
    """How much of `item`'s text (its string fields) the prompt `asked` holds: 3 for a value quoted whole, 1 per
    shared word."""
    if not isinstance(item, dict):
        return 0
    score = 0
    for value in item.values():
        if isinstance(value, str) and value.strip():
            score += 3 if len(value) >= 3 and value.casefold() in asked else len(tokens(value) & words)
    return score


def described_by(response: Any, thing: str | None) -> frozenset[str]:
    """The text a list's items are described by (a title, a name, an invoice's `number` "INV-0042"), not their
    ids: a prompt that quotes one names an item, not an id to send."""
    items = _items(response, thing) or []
    return frozenset(value for item in items if isinstance(item, dict) for name, value in item.items()
                     if isinstance(value, str) and name not in ("id", *_OWN_KEYS[2:]) and not is_id_name(name)
                     and not (thing is not None and head(name) == thing))


def _ids_of(body: Any, thing: str | None, entities: frozenset[str]) -> dict[str, str]:
    """The ids of one thing's fields (`response_ids` of a body that is no list)."""
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


def listed_ids(response: Any, thing: str | None, entities: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Entity -> the ids of the items a response lists, in order: the listed things themselves (`{"rides": [...]}`
    of `GET /rides`) and the lists a thing holds under an entity's name (a user's `"orders": ["#W1", "#W2"]`)."""
    found: dict[str, tuple[str, ...]] = {}
    items = _items(response, thing)
    if thing is not None and items is not None:
        found[thing] = _item_ids(items, thing, entities)
    if items is None and isinstance(response, dict):
        for name, value in response.items():
            if isinstance(value, list) and (entity := head(name)) in entities and entity not in found:
                found[entity] = _item_ids(value, entity, entities)
    return {entity: ids for entity, ids in found.items() if ids}


def _item_ids(items: list[Any], entity: str, entities: frozenset[str]) -> tuple[str, ...]:
    """Each item's id: the item itself when it is one, else its own key or a field named as the entity's id."""
    out: list[str] = []
    for item in items:
        if isinstance(item, dict):
            ids = _ids_of(item, entity, entities)
            value = ids.get(entity) or next((v for name, v in ids.items() if head(name) == entity), None)
        else:
            value = id_value(item)
        if value is not None and value not in out:
            out.append(value)
    return tuple(out)


def _items(response: Any, thing: str | None) -> list[Any] | None:
    """The items of a list response: the body itself, or the list under `data`, `items`, `results` or the listed
    entity's own name (`{"rides": [...]}`) of a body that is not itself one thing (no `id`)."""
    if isinstance(response, list):
        return response
    if isinstance(response, dict) and "id" not in response:
        for key, items in response.items():
            if (key in _LIST_KEYS or (thing is not None and head(key) == thing)) and isinstance(items, list) \
                    and items and isinstance(items[0], dict):
                return items
    return None


def id_value(value: Any) -> str | None:
    """An id: a string without spaces, or an integer (not a flag, not a quantity written as a float)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= _MAX_ID_CHARS and not any(c.isspace() for c in value):
        return value
    return None
