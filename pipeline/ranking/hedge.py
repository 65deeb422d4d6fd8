"""A hedged top of the list: when two next steps are plausible (look the thing up or act on it now; repeat the
last call or move on), the first places cover both before they spend themselves on variants of one.

A step is what a candidate does to what: repeat the last call, or read or write the thing it addresses: the
entity of its last required id (three writes on one reservation are variants of one step), else its own path (a
search of people and a search of films are two). Within the first `width` places, the best candidate that does
something else to a thing already listed, or repeats the last call when no listed one does (the next item of a
list: the next verse, the next card), takes the place of the next variant when its probability is at least
`share` of that variant's. Other things are left to the model's order: a list of different things already
hedges.
"""

from __future__ import annotations

import numpy as np

from pipeline.ranking.profile import Kind, SpecProfile

_WRITES = np.array([k in (Kind.CREATE, Kind.UPDATE, Kind.DELETE, Kind.ACTION) for k in Kind])


def steps(profile: SpecProfile, ops: np.ndarray, last_op: int | None) -> list[tuple[bool, bool, str]]:
    """(repeats the last call, writes, the thing addressed) of each operation index in `ops`."""
    out = []
    for i in ops:
        op = profile.ops[int(i)]
        thing = op.required_entities[-1] if op.required_entities else "/".join(op.segments)
        out.append((int(i) == last_op, bool(_WRITES[profile.kind[int(i)]]), thing))
    return out


def hedge(order: np.ndarray, scores: np.ndarray, step_of: list[tuple[bool, bool, str]], width: int,
          share: float) -> tuple[np.ndarray, np.ndarray]:
    """Reorder the best-first positions `order` (scores per position); returns the order and its scores made
    monotone along it (a candidate moved up takes no score above the one ahead of it)."""
    chosen = [int(order[0])] if len(order) else []
    rest = [int(p) for p in order[1:]]
    while len(chosen) < min(width, len(order)) and rest:
        covered = {step_of[p] for p in chosen}
        things = {step_of[p][2] for p in chosen}
        other = next((p for p in rest if step_of[p] not in covered and (step_of[p][0] or step_of[p][2] in things)),
                     None)
        pick = other if other is not None and scores[other] >= share * scores[rest[0]] else rest[0]
        chosen.append(pick)
        rest.remove(pick)
    new_order = np.array(chosen + rest, dtype=order.dtype)
    return new_order, np.minimum.accumulate(scores[new_order])
