"""From specs to a learning-to-rank matrix: sessions -> problems -> candidates and features -> labels.

Feature rows are produced by `pipeline.predict.assemble`, the very function serving uses.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from pipeline.errors import OpenSesameError
from pipeline.ranking.context import PreparedSpec, build_context
from pipeline.ranking.embedding import Embedder, OperationEmbeddings
from pipeline.ranking.features import FEATURE_NAMES
from pipeline.ranking.predict import assemble
from pipeline.ranking.profile import Kind
from pipeline.ranking.relations import links, relations_from, response_links
from pipeline.ranking.sources import Hits, first_keys, transition_keys
from pipeline.ranking.stats import START, InMemoryTransitions, PatternStats, TransitionCounts, link_levels
from pipeline.settings import FetchSettings, RankingSettings, SessionShapes
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.source import read_spec
from train.parallel import ordered_map
from train.restyle import RestyledSpec
from train.sessions import SessionGenerator
from train.walk import Problem


@dataclass(slots=True)
class Dataset:
    X: np.ndarray
    y: np.ndarray
    group_sizes: np.ndarray
    group_specs: list[str]  # spec of each group, for per-spec splits and reports
    problems: int  # problems seen, including those whose answer no source proposed
    recalled: int  # problems whose expected operation was among the candidates

    @property
    def recall(self) -> float:
        return self.recalled / max(1, self.problems)


@dataclass(slots=True)
class Corpus:
    specs: dict[str, PreparedSpec]
    problems: list[Problem]
    counts: InMemoryTransitions = field(default_factory=InMemoryTransitions)
    drawn: Counter[str] = field(default_factory=Counter)  # sessions by the shape drawn for them
    made: Counter[str] = field(default_factory=Counter)  # sessions by the shape they have (browse where one failed)

    def mixture(self, configured: SessionShapes) -> dict[str, dict[str, float]]:
        """Each shape's share of the sessions: configured (the weights, normalised), drawn and made."""
        weights = configured.model_dump()
        total = sum(weights.values()) or 1.0
        drawn, made = sum(self.drawn.values()) or 1, sum(self.made.values()) or 1
        return {shape: {"configured": round(weight / total, 4), "drawn": round(self.drawn[shape] / drawn, 4),
                        "made": round(self.made[shape] / made, 4)} for shape, weight in weights.items()}


def sessions_for(n_operations: int, n_searches: int, scale: float) -> int:
    """~4 sqrt(n) sessions per spec; specs with several searches get more, as they alone teach *which* search
    a named thing needs (most specs have at most one)."""
    base = np.clip(scale * 4 * np.sqrt(n_operations), 8, 150 * scale)
    return int(base * (1 + 0.5 * min(max(n_searches - 1, 0), 4)))


def generate(
    catalogues: list[tuple[str, Catalogue]],
    op_embeddings: OperationEmbeddings,
    seed: int,
    scale: float,
    history_fraction: float,
    shapes: SessionShapes | None = None,
    restyled: float = 0.0,
) -> Corpus:
    """Problems for every spec. For `history_fraction` of the specs, a second, disjoint set of sessions feeds
    the per-spec transition counts, as real traffic would; the others start cold, like a new spec. A `restyled`
    share of the specs is rendered in the other API style (train/restyle.py) with the same sessions: the ranker
    learns what a session means where the paths do not say it (RPC), not one style's habits."""
    rng = random.Random(seed)
    corpus = Corpus(specs={}, problems=[])
    for name, catalogue in catalogues:
        generator = SessionGenerator(catalogue, random.Random(rng.random()), shapes or SessionShapes())
        n = sessions_for(len(catalogue.operations), int((generator.profile.kind == Kind.SEARCH).sum()), scale)
        problems: list[Problem] = []
        for s in range(n):
            session = generator.session()
            if session is not None:
                corpus.drawn[session.drawn] += 1
                corpus.made[session.shape] += 1
                problems.extend(generator.problems(session, name, f"{name}#{s}"))
        if not problems:
            continue
        # Its own draw, so the choice changes no other spec's sessions.
        style = _restyling(catalogue) if random.Random(f"style:{seed}:{name}").random() < restyled else None
        if style is not None:
            name, catalogue, problems = f"{name}@other", style.catalogue, [_restyled(p, style) for p in problems]
        corpus.specs[name] = PreparedSpec.build(catalogue, op_embeddings.get(catalogue))
        corpus.problems.extend(problems)
        if rng.random() < history_fraction:
            for _ in range(n):
                session = generator.session()
                if session is None:
                    continue
                previous = START
                for i in session.ops:
                    called = generator.catalogue.operations[i].id
                    called = style.operation(called) if style is not None else called
                    corpus.counts.add(catalogue.content_hash, previous, called)
                    previous = called
    return corpus


def _restyling(catalogue: Catalogue) -> RestyledSpec | None:
    """The spec in the other style; None for the few specs whose document it cannot render (kept as they are)."""
    try:
        return RestyledSpec.of(read_spec(catalogue.source, FetchSettings(max_bytes=64 * 1024 * 1024)))
    except (OpenSesameError, KeyError, TypeError, ValueError):
        return None


def _restyled(problem: Problem, style: RestyledSpec) -> Problem:
    return Problem(
        problem.id, f"{problem.spec}@other", [style.event(e) for e in problem.events], problem.prompt,
        style.operation(problem.expected), {} if style.moves_path_values(problem.expected) else problem.expected_params,
    )


def learn_patterns(corpus: Corpus) -> PatternStats:
    """Spec-agnostic pattern rates over all operations of each training problem (chosen / available)."""
    transition: Counter[str] = Counter()
    transition_chosen: Counter[str] = Counter()
    first: Counter[str] = Counter()
    first_chosen: Counter[str] = Counter()
    for problem in corpus.problems:
        spec = corpus.specs[problem.spec]
        profile = spec.profile
        expected = profile.index[problem.expected]
        last = spec.matcher.match(problem.events[-1].endpoint).operation if problem.events else None
        if last is None:
            # With no history, only enum parameters are fillable: unfillable = the free required ones.
            keys = first_keys(profile, profile.n_free_required)
            first.update(keys)
            first_chosen[keys[expected]] += 1
            continue
        a = profile.index[last.id]
        link = link_levels(links(profile, a), response_links(profile, a))
        keys = transition_keys(profile, a, relations_from(profile, a), link)
        transition.update(keys)
        transition_chosen[keys[expected]] += 1
    return PatternStats(
        transition={k: (transition_chosen[k], n) for k, n in transition.items()},
        first={k: (first_chosen[k], n) for k, n in first.items()},
    )


def embed_prompts(problems: list[Problem], embedder: Embedder) -> dict[str, np.ndarray]:
    texts = sorted({p.prompt.strip() for p in problems if p.prompt.strip()})
    return dict(zip(texts, embedder.embed(texts))) if texts else {}


@dataclass(frozen=True, slots=True)
class _BuildInputs:
    corpus: Corpus
    patterns: PatternStats
    counts: TransitionCounts
    settings: RankingSettings
    prompt_vectors: dict[str, np.ndarray]
    extra_sources: dict[str, dict[str, Hits]] | None


# What the workers of `build` read: set before they fork, inherited rather than pickled (train/parallel.py).
_inputs: _BuildInputs | None = None


def _rows(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[int], list[str]]:
    """Feature rows, labels, group sizes and specs of the problems [start, stop) that have their answer among the
    candidates."""
    assert _inputs is not None
    corpus, extra_sources = _inputs.corpus, _inputs.extra_sources
    rows: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    group_specs: list[str] = []
    for problem in corpus.problems[bounds[0] : bounds[1]]:
        spec = corpus.specs[problem.spec]
        prompt = problem.prompt.strip()
        vector = _inputs.prompt_vectors.get(prompt)
        ctx = build_context(spec, problem.events, prompt, vector, _inputs.settings.max_history)
        extra = extra_sources.get(problem.id) if extra_sources else None
        assembled = assemble(ctx, _inputs.patterns, _inputs.counts, _inputs.settings, extra)
        y = (assembled.candidates.indices == spec.profile.index[problem.expected]).astype(np.float32)
        if not y.any():
            continue  # nothing to learn from a list without the answer; counted against recall
        rows.append(assembled.X)
        labels.append(y)
        group_specs.append(problem.spec)
    X = np.vstack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    y_all = np.concatenate(labels) if labels else np.zeros(0, dtype=np.float32)
    return X, y_all, [len(y) for y in labels], group_specs


def build(
    corpus: Corpus,
    patterns: PatternStats,
    counts: TransitionCounts,
    settings: RankingSettings,
    prompt_vectors: dict[str, np.ndarray],
    extra_sources: dict[str, dict[str, Hits]] | None = None,
    workers: int = 1,
) -> Dataset:
    """The matrix of every problem, in the problems' order whatever the number of `workers` (forked processes,
    each building slices of the problems): the same rows, so the same model."""
    global _inputs
    n = len(corpus.problems)
    # Several slices per worker: problems of large specs cost more, and an even share of slices evens the load.
    # At least one slice, empty when there are no problems: its empty arrays shape the empty matrix.
    cuts = np.linspace(0, n, max(1, min(n, 8 * workers)) + 1).astype(int).tolist()
    _inputs = _BuildInputs(corpus, patterns, counts, settings, prompt_vectors, extra_sources)
    try:
        parts = ordered_map(_rows, list(pairwise(cuts)), workers)
    finally:
        _inputs = None
    sizes = [size for part in parts for size in part[2]]
    return Dataset(
        X=np.vstack([part[0] for part in parts]),
        y=np.concatenate([part[1] for part in parts]),
        group_sizes=np.array(sizes, dtype=np.int32),
        group_specs=[spec for part in parts for spec in part[3]],
        problems=n,
        recalled=len(sizes),
    )
