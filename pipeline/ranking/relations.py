"""How two operations sit relative to each other in the path tree, as a small spec-agnostic vocabulary."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from pipeline.ranking.profile import OpProfile, SpecProfile


class Relation(IntEnum):
    SAME_PATH = 0  # another method on the same path: GET -> POST /invoices/{id}
    ITEM = 1  # collection -> its item: /invoices -> /invoices/{id}
    CHILD = 2  # one segment deeper: /invoices/{id} -> /invoices/{id}/lines
    DESCENDANT = 3
    PARENT = 4
    ANCESTOR = 5
    SIBLING = 6  # same parent: /invoices/search -> /invoices/{id}
    SAME_ROOT = 7  # same top resource: /invoices/... -> /invoices/.../...
    UNRELATED = 8


def common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def relation(a: OpProfile, b: OpProfile) -> Relation:
    sa, sb = a.segments, b.segments
    prefix = common_prefix(sa, sb)
    if prefix == len(sa) == len(sb):
        return Relation.SAME_PATH
    if prefix == len(sa):
        if len(sb) == len(sa) + 1:
            return Relation.ITEM if sb[-1] == "{}" else Relation.CHILD
        return Relation.DESCENDANT
    if prefix == len(sb):
        return Relation.PARENT if len(sa) == len(sb) + 1 else Relation.ANCESTOR
    if len(sa) == len(sb) and prefix == len(sa) - 1:
        return Relation.SIBLING
    if a.root and a.root == b.root:
        return Relation.SAME_ROOT
    return Relation.UNRELATED


def relations_from(profile: SpecProfile, source: int) -> np.ndarray:
    """Relation of every operation of the spec to operation `source`, read-only. Kept on the profile: a
    request needs the rows of its history's operations, and a session's next request needs the same ones
    (a row is a Python pass over all of the spec's operations)."""
    row = profile.relation_rows.get(source)
    if row is None:
        a = profile.ops[source]
        row = np.fromiter((relation(a, b) for b in profile.ops), dtype=np.int8, count=len(profile.ops))
        row.flags.writeable = False
        profile.relation_rows[source] = row
    return row


def links(profile: SpecProfile, source: int) -> np.ndarray:
    """1 where an operation needs an entity that operation `source` produces (search person -> person credits)."""
    out = np.zeros(len(profile), dtype=bool)
    out[profile.enables[source]] = True
    return out


def response_links(profile: SpecProfile, source: int) -> np.ndarray:
    """1 where an operation needs an entity that `source`'s response names (tv show -> its network), and that
    `links` does not already cover."""
    out = np.zeros(len(profile), dtype=bool)
    out[profile.enables_by_response[source]] = True
    return out
