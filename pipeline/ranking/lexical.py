"""IDF-weighted word overlap between a prompt and each operation, built once per spec.

MiniLM ranks "today's most trending TV show" closer to the many TV operations than to the one `GET /trending`
operation; the word "trending" occurs in one operation of the spec and "tv" in fifty. Weighting matched words by
how rare they are in *this* spec says which words single an operation out, on any spec.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


class LexicalIndex:
    """Inverted index over one bag of stemmed words per operation."""

    def __init__(self, bags: Sequence[frozenset[str]]) -> None:
        self.size = len(bags)
        postings: dict[str, list[int]] = {}
        for i, bag in enumerate(bags):
            for word in bag:
                postings.setdefault(word, []).append(i)
        self.postings = {w: np.array(ops, dtype=np.int32) for w, ops in postings.items()}
        self.idf = {w: math.log((self.size + 1) / (len(ops) + 0.5)) for w, ops in self.postings.items()}

    def score(self, words: Iterable[str]) -> np.ndarray:
        """Per operation: the summed IDF of the given words it contains."""
        out = np.zeros(self.size, dtype=np.float32)
        # In a fixed order: a set's order changes with every process (PYTHONHASHSEED), and float sums in another
        # order differ in the last bit, which flips the ranks of tied operations between two trainings.
        for word in sorted(set(words)):
            if word in self.postings:
                out[self.postings[word]] += self.idf[word]
        return out


def first_mentions(prompt_words: list[str], index: LexicalIndex, min_idf: float = 1.0) -> np.ndarray:
    """Per operation: where in the request (0 = first word, 1 = last) a word it holds first occurs; NaN where
    none does. Words common in the spec (IDF below `min_idf`) mark nothing, but a word of one operation alone
    always marks it: in a spec of three operations no word reaches the IDF, and "the forecast, current weather
    and time zone" still names three of them in order. "Find flights to London and then hotels there" asks for
    the flight search first: the earlier mention is the next call, the later one after."""
    out = np.full(index.size, np.nan, dtype=np.float32)
    span = max(1, len(prompt_words) - 1)
    for position, word in enumerate(prompt_words):
        ops = index.postings.get(word)
        if ops is None or (index.idf[word] < min_idf and len(ops) > 1):
            continue
        here = out[ops]
        out[ops] = np.where(np.isnan(here), position / span, np.minimum(here, position / span))
    return out


def shares(prompt_words: frozenset[str], *indexes: LexicalIndex) -> list[np.ndarray]:
    """Each index's scores as a share (0 to 1) of the prompt's matchable weight: the words that occur anywhere in
    the spec, each at its highest IDF. A prompt's only known word being a common one then scores low everywhere,
    instead of a full match on every operation that has it."""
    total = sum(max(index.idf.get(w, 0.0) for index in indexes) for w in sorted(prompt_words))
    scores = [index.score(prompt_words) for index in indexes]
    return [s / total for s in scores] if total > 0 else scores
