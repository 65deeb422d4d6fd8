"""Local `$ref` resolution that never loops.

The catalogue only needs to look *through* references (a parameter that is a `$ref` to
`#/components/parameters/limit`, a path item that points elsewhere), never to inline whole schema trees,
so references are followed on access, one node at a time. Chains are followed with a visited set, so
`A -> B -> A` stops instead of recursing; recursive schemas are never expanded at all.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote


def pointer_tokens(ref: str) -> list[str]:
    """The unescaped tokens of a JSON pointer, with or without its `#`: `#/paths/~1users~1{id}/get` ->
    paths, /users/{id}, get."""
    pointer = ref.removeprefix("#")
    return [unquote(t).replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")] if pointer else []


def resolve_pointer(node: Any, tokens: list[str]) -> Any:
    """The node at `tokens` under `node`, or None where the path does not exist."""
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


class RefResolver:
    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document
        self.unresolved: set[str] = set()

    def _pointer(self, ref: str) -> Any:
        return resolve_pointer(self._document, pointer_tokens(ref))

    def deref(self, node: Any) -> Any:
        """Follow `$ref` chains from `node`; an external, broken or cyclic reference yields `{}`."""
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if not ref.startswith("#") or ref in seen:
                self.unresolved.add(ref)
                return {}
            seen.add(ref)
            target = self._pointer(ref)
            if target is None:
                self.unresolved.add(ref)
                return {}
            node = target
        return node
