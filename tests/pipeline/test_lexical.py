"""IDF-weighted word overlap: rare words single an operation out; response fields say which one answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.ranking.context import PreparedSpec, build_context
from pipeline.ranking.lexical import LexicalIndex, shares
from pipeline.ranking.profile import Fanout, SpecProfile
from pipeline.ranking.reasons import explain
from pipeline.ranking.signals import compute_signals
from pipeline.ranking.text import tokens
from pipeline.settings import FetchSettings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.load import load_catalogue
from tests.support import TMDB_CASES, TMDB_SPEC


def test_a_rare_word_outweighs_a_common_one() -> None:
    bags = [frozenset({"tv", "show", "popular"}), frozenset({"tv", "show", "similar"}), frozenset({"trend"}),
            frozenset({"tv", "detail"}), frozenset({"tv", "season"})]
    index = LexicalIndex(bags)
    (score,) = shares(frozenset({"trend", "tv", "show"}), index)
    # "trend" occurs once, "tv" four times: the trending op's one word is worth more than the detail op's.
    assert score[2] > score[3]
    assert np.all((score >= 0) & (score <= 1))
    assert score[0] == pytest.approx(score[1])  # same matched words, same score


def test_words_unknown_to_the_spec_count_for_nothing() -> None:
    index = LexicalIndex([frozenset({"invoice"}), frozenset({"customer"})])
    (score,) = shares(frozenset({"christopher", "nolan"}), index)
    assert not score.any()
    (score,) = shares(frozenset({"invoice", "nolan"}), index)
    assert score.tolist() == [1.0, 0.0]


def _with_random_vectors(catalogue: Catalogue) -> PreparedSpec:
    """Embeddings are not what these tests are about: random unit vectors keep them fast and model-free."""
    vectors = np.random.default_rng(0).normal(size=(len(catalogue.operations), 8)).astype(np.float32)
    return PreparedSpec.build(catalogue, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


@pytest.fixture(scope="module")
def tmdb():
    return _with_random_vectors(load_catalogue(TMDB_SPEC, FetchSettings()))


def test_response_fields_name_the_operation_that_answers(tmdb) -> None:
    profile: SpecProfile = tmdb.profile
    ctx = build_context(tmdb, [], "When is the birthday of the lead actor of Band of Brothers?", None, 20)
    signals = compute_signals(ctx)
    assert signals.field_idf is not None and signals.goal_field is not None
    person = profile.index["GET /person/{person_id}"]
    assert signals.field_idf[person] == signals.field_idf.max() > 0
    # Schema names are not fields: `movie-list-object` does not make every list "hold" movies.
    assert "object" not in profile.ops[profile.index["GET /movie/popular"]].fields
    # What leads to the person (a search for people) inherits the answer through `goal_field`.
    search_person = profile.index["GET /search/person"]
    assert signals.goal_field[search_person] == pytest.approx(signals.field_idf[person])


def test_trending_is_singled_out_by_its_rare_word(tmdb) -> None:
    ctx = build_context(tmdb, [], "I need a poster of today's most trending TV show", None, 20)
    signals = compute_signals(ctx)
    assert signals.lex_idf is not None
    index = tmdb.profile.index
    trending = index["GET /trending/{media_type}/{time_window}"]
    assert tokens("trending") <= tmdb.profile.ops[trending].tokens
    # One rare word ("trending") beats the common one ("tv") that the many TV operations share; only those
    # holding "tv" and another word of the prompt ("today", "show") can score higher.
    tv_only = [i for i, op in enumerate(tmdb.profile.ops) if op.tokens & tokens("trending tv show today") == {"tv"}]
    assert len(tv_only) >= 15
    assert signals.lex_idf[trending] > signals.lex_idf[tv_only].max() > 0
    assert trending in np.argsort(-signals.lex_idf)[:4]
    assert index["GET /tv/airing_today"] in np.argsort(-signals.lex_idf)[:4]


def test_the_reason_names_the_property_asked_for(tmdb) -> None:
    ctx = build_context(tmdb, [], "When is the birthday of the lead actor of Band of Brothers?", None, 20)
    person = tmdb.profile.index["GET /person/{person_id}"]
    reason = explain(ctx, compute_signals(ctx), person, ["retrieval"], 0.0, demoted=False)
    assert "its response has the birthday asked for" in reason


def test_fanout_best_is_the_max_over_each_set_and_nan_for_empty_sets() -> None:
    sets = [np.array([1, 2]), np.array([], dtype=np.int32), np.array([0]), np.array([], dtype=np.int32),
            np.array([2, 0, 1])]
    values = np.array([0.5, -1.0, 2.0, 7.0, np.nan], dtype=np.float32)
    best = Fanout(sets).best(values)
    np.testing.assert_array_equal(best, [2.0, np.nan, 0.5, np.nan, 2.0])
    assert np.isnan(Fanout([np.array([], dtype=np.int32)] * 3).best(values[:3])).all()


def test_features_are_the_same_in_every_process() -> None:
    """Python's set order changes with every process (PYTHONHASHSEED); summing word weights in that order made
    the same request's scores differ in the last bit, which reordered tied operations: two trainings of one
    seed got different rows. Every feature of a request must be bit for bit the same in any process."""
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, json, numpy as np\n"
        "from pipeline.ranking.context import Event, PreparedSpec, build_context\n"
        "from pipeline.ranking.predict import assemble\n"
        "from pipeline.ranking.stats import InMemoryTransitions, PatternStats\n"
        "from pipeline.settings import FetchSettings, RankingSettings\n"
        "from pipeline.spec.load import load_catalogue\n"
        f"catalogue = load_catalogue({str(TMDB_SPEC)!r}, FetchSettings())\n"
        "rng = np.random.default_rng(0)\n"
        "unit = lambda v: (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)\n"
        "spec = PreparedSpec.build(catalogue, unit(rng.normal(size=(len(catalogue.operations), 8))))\n"
        "digest = hashlib.sha256()\n"
        f"cases = [json.loads(line) for line in open({str(TMDB_CASES)!r})]\n"
        "for prompt in sorted({case['prompt'] for case in cases}):\n"
        "    for events in ([], [Event(endpoint='GET /search/tv')]):\n"
        "        ctx = build_context(spec, events, prompt, unit(rng.normal(size=8)), 20)\n"
        "        X = assemble(ctx, PatternStats(), InMemoryTransitions(), RankingSettings()).X\n"
        "        digest.update(np.nan_to_num(X, nan=-7.0).tobytes())\n"
        "print(digest.hexdigest())\n"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")]
    assert len(runs[0].strip()) == 64
    assert runs[0] == runs[1] == runs[2]


WEATHER_REQUEST = "Get the forecast, current weather, and time zone for Cape Town"


def _weather(tmp_path) -> PreparedSpec:
    """NESTFUL's weather API in small: three operations, so no word of the spec reaches the IDF threshold."""
    city = [{"name": "q", "in": "query", "required": True, "schema": {"type": "string"}}]
    paths = {f"/{name}.json": {"get": {"operationId": name, "summary": summary, "parameters": city,
                                       "responses": {"200": {"description": "ok"}}}}
             for name, summary in [("current", "Current weather"), ("forecast", "Forecast weather"),
                                   ("timezone", "Time zone")]}
    path = tmp_path / "weather.json"
    path.write_text(json.dumps({"openapi": "3.0.3", "info": {"title": "Weather", "version": "1"}, "paths": paths}))
    return _with_random_vectors(load_catalogue(str(path), FetchSettings()))


def test_a_small_specs_operations_are_named_in_the_order_the_request_says_them(tmp_path) -> None:
    weather = _weather(tmp_path)
    ctx = build_context(weather, [], WEATHER_REQUEST, None, 20)
    mention = compute_signals(ctx).mention_pos
    assert mention is not None
    at = {op.id: mention[i] for i, op in enumerate(weather.catalogue.operations)}
    assert at["GET /forecast.json"] < at["GET /current.json"] < at["GET /timezone.json"]


def test_the_first_request_not_made_yet_ranks_first_among_those_named(tmp_path, predictor) -> None:
    from pipeline.ranking.context import Event
    from pipeline.ranking.features import column
    from pipeline.ranking.predict import assemble

    weather = _weather(tmp_path)
    done = [Event(endpoint="GET /forecast.json?q=Cape%20Town")]
    assembled = assemble(build_context(weather, done, WEATHER_REQUEST, None, 20), predictor.model.patterns,
                         predictor.counts, predictor.settings)
    operations = weather.catalogue.operations
    pending = {operations[int(i)].id: r for i, r in zip(assembled.candidates.indices,
                                                         column(assembled.X, "mention_rank_pending"))}
    assert pending["GET /current.json"] == 1 and pending["GET /timezone.json"] == 2
    assert np.isnan(pending["GET /forecast.json"])  # asked for and made: no longer waiting
