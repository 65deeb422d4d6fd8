"""A destructive operation never ranks first unless the prompt explicitly asks for that action."""

from __future__ import annotations

import numpy as np

DEMOTED_REASON = "demoted: destructive and the prompt does not ask for it"


def demote_destructive(
    order: np.ndarray, destructive: np.ndarray, asked: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Reorder candidate positions so the first is not an unrequested destructive operation.

    `order` is best-first positions into the candidate arrays; `destructive`/`asked` are per position.
    Returns the new order, scores made monotone along it, and the positions that were demoted.
    """
    unasked = destructive & ~asked
    first_safe = next((i for i, p in enumerate(order) if not unasked[p]), None)
    if first_safe is None or first_safe == 0:
        return order, scores[order], set()
    demoted = {int(p) for p in order[:first_safe]}
    new_order = np.concatenate([order[first_safe : first_safe + 1], order[:first_safe], order[first_safe + 1 :]])
    # Keep scores monotone in rank: a demoted candidate may not score above the one now ahead of it.
    ordered_scores = np.minimum.accumulate(scores[new_order])
    return new_order, ordered_scores, demoted
