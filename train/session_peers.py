"""The classic session-based recommenders, as peers of what the service learns from traffic: each learns from the
same sessions (the imported half of a set, or the labels as they arrive online) and falls back to a cosine for
what it has never seen.

- `Markov`: a first-order chain per spec, P(next | last call), the session start as a state of its own.
- `SessionKNN`: V-SKNN (Ludewig & Jannach, "Evaluation of session-based recommendation algorithms", 2018): the
  current session's calls weighted by recency (linear decay), the `k` past sessions of the spec most similar to it
  among the `sample` most recent that share a call. Each neighbour votes with its similarity, sequence-aware as
  their SF-SKNN: for the call that followed the current last call in it, else for each of its calls the current
  session has not made (a plain V-SKNN votes for every call it holds, the ones just made first, which next-call
  prediction punishes). In their comparisons such neighbourhood methods match or beat neural session models on
  small data.

Scores are the learned evidence plus the fallback squeezed below one unit of it, so evidence decides and the
cosine orders what evidence does not separate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from pipeline.ranking.context import PreparedSpec
from pipeline.ranking.stats import START
from train.evaluate import Case
from train.peers import Cosine, rank_of

SESSION_PEERS = ("markov", "sknn")


def _with_fallback(evidence: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    span = float(fallback.max() - fallback.min())
    squeezed = (fallback - fallback.min()) / span * 0.5 if span > 0 else np.zeros_like(fallback)
    return evidence + squeezed


class Markov:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def learn(self, spec: str, session: list[str]) -> None:
        for previous, following in zip([START, *session], session, strict=False):
            self.learn_transition(spec, previous, following)

    def learn_transition(self, spec: str, previous: str, following: str) -> None:
        self._counts[(spec, previous)][following] += 1

    def scores(self, spec: str, index: dict[str, int], history: list[str], fallback: np.ndarray) -> np.ndarray:
        evidence = np.zeros_like(fallback)
        for operation, count in self._counts.get((spec, history[-1] if history else START), {}).items():
            if operation in index:
                evidence[index[operation]] = count
        return _with_fallback(evidence, fallback)


class SessionKNN:
    def __init__(self, k: int = 100, sample: int = 500) -> None:
        self._k = k
        self._sample = sample
        self._sessions: dict[str, list[list[str]]] = defaultdict(list)
        self._holding: dict[tuple[str, str], list[int]] = defaultdict(list)  # (spec, operation) -> session numbers

    def learn(self, spec: str, session: list[str]) -> None:
        number = len(self._sessions[spec])
        self._sessions[spec].append(session)
        for operation in set(session):
            self._holding[(spec, operation)].append(number)

    def scores(self, spec: str, index: dict[str, int], history: list[str], fallback: np.ndarray) -> np.ndarray:
        evidence = np.zeros_like(fallback)
        if not history:
            return _with_fallback(evidence, fallback)
        weights: dict[str, float] = {}
        for position, operation in enumerate(history, start=1):
            weights[operation] = position / len(history)  # later calls count more; a repeat keeps its latest
        candidates: set[int] = set()
        for operation in weights:
            candidates.update(self._holding.get((spec, operation), []))
        recent = sorted(candidates)[-self._sample:]
        sessions = self._sessions[spec]
        similarity = {n: sum(weights.get(op, 0.0) for op in set(sessions[n])) for n in recent}
        neighbours = sorted(similarity.items(), key=lambda x: -x[1])[: self._k]
        last = history[-1]
        for n, sim in neighbours:
            neighbour = sessions[n]
            followed = [neighbour[i + 1] for i in range(len(neighbour) - 1) if neighbour[i] == last]
            for operation in set(followed) or set(neighbour) - weights.keys():
                if operation in index:
                    evidence[index[operation]] += sim
        return _with_fallback(evidence, fallback)


def case_history(spec: PreparedSpec, case: Case) -> list[str]:
    """A case's history as the operations of the spec it matches (calls it does not match are left out)."""
    return [m.operation.id for m in (spec.matcher.match(e.endpoint) for e in case.events) if m.operation is not None]


class CaseSession(NamedTuple):
    """Cases of one user session, in order: each case's history is the one before's plus its answer."""

    spec: str  # the spec's location
    cases: list[int]  # indices into the set


def case_sessions(cases: list[Case], operations: Callable[[Case], list[str]]) -> list[CaseSession]:
    """The sessions of an eval set, in order of their first case: a case continues the latest session on its spec
    whose calls so far (`operations`: a case's history as operation ids) are its history, whatever it asks (a
    conversation asks anew at each turn); else it starts one. Sets list a session's cases in order, each
    extending the one before."""
    sessions: list[CaseSession] = []
    latest: dict[str, tuple[int, list[str]]] = {}
    for number, case in enumerate(cases):
        history = operations(case)
        key = case.spec
        found = latest.get(key)
        if found is not None and found[1] == history:
            sessions[found[0]].cases.append(number)
        else:
            sessions.append(CaseSession(case.spec, [number]))
            found = (len(sessions) - 1, history)
        latest[key] = (found[0], [*history, case.expected])
    return sessions


class OnlinePeers:
    """`Markov` and `SessionKNN` ranking each case, then learning it: the chain each transition at once, V-SKNN
    each session once it ended (its neighbours are whole sessions)."""

    def __init__(self, fallback: Cosine) -> None:
        self._fallback = fallback
        self.markov = Markov()
        self.sknn = SessionKNN()

    def ranks(self, spec: PreparedSpec, history: list[str], prompt: str, expected: str) -> dict[str, int | None]:
        target = spec.profile.index.get(expected)
        if target is None:
            return dict.fromkeys(SESSION_PEERS)
        last = spec.profile.index.get(history[-1]) if history else None
        fallback = self._fallback.scores(spec, prompt, last)
        index = spec.profile.index
        return {name: rank_of(peer.scores(spec.content_hash, index, history, fallback), target)
                for name, peer in (("markov", self.markov), ("sknn", self.sknn))}

    def learn_call(self, spec: PreparedSpec, history: list[str], called: str) -> None:
        self.markov.learn_transition(spec.content_hash, history[-1] if history else START, called)

    def learn_session(self, spec: PreparedSpec, session: list[str]) -> None:
        self.sknn.learn(spec.content_hash, session)
