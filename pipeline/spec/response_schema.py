"""The success response's shape: the property names an operation answers with, which say what it is for
("birthday", "headquarters") and which ids it hands to later calls."""

from __future__ import annotations

from collections import deque
from typing import Any

from pipeline.spec.refs import RefResolver

MAX_FIELDS = 200
_FIELD_DEPTH = 3


def _success_schema(op: dict[str, Any], resolver: RefResolver) -> Any:
    responses = resolver.deref(op.get("responses"))
    if not isinstance(responses, dict):
        return None
    # YAML may key responses by int (200) or by string ("200"); the first 2xx wins, else `default`.
    ordered = sorted((str(code), value) for code, value in responses.items() if str(code).startswith("2"))
    ordered += [(str(code), value) for code, value in responses.items() if str(code) == "default"]
    for _, raw in ordered:
        response = resolver.deref(raw)
        if not isinstance(response, dict):
            continue
        if "schema" in response:  # Swagger 2.0
            return response["schema"]
        content = response.get("content")
        if isinstance(content, dict) and content:
            media = content.get("application/json") or next(iter(content.values()))
            if isinstance(media, dict) and "schema" in media:
                return media["schema"]
    return None


def response_fields(op: dict[str, Any], resolver: RefResolver) -> tuple[str, ...]:
    """Property names (and `$ref` schema names) of the success response, breadth-first to a small depth.

    Each schema object is visited once, so recursive schemas terminate; the result is capped to stay small.
    """
    found: dict[str, None] = {}
    seen: set[int] = set()
    queue: deque[tuple[Any, int]] = deque([(_success_schema(op, resolver), 0)])
    while queue and len(found) < MAX_FIELDS:
        raw, depth = queue.popleft()
        if isinstance(raw, dict) and isinstance(raw.get("$ref"), str):
            found.setdefault(raw["$ref"].rsplit("/", 1)[-1], None)
        node = resolver.deref(raw)
        if not isinstance(node, dict) or id(node) in seen or depth > _FIELD_DEPTH:
            continue
        seen.add(id(node))
        for key in ("allOf", "oneOf", "anyOf"):
            for part in node.get(key) or []:
                queue.append((part, depth))  # composition: the same object, same depth
        if isinstance(node.get("items"), dict):
            queue.append((node["items"], depth + 1))
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, child in properties.items():
                found.setdefault(str(name), None)
                queue.append((child, depth + 1))
    return tuple(found)[:MAX_FIELDS]
