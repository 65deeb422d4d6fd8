"""How operations relate in the path tree, and the rows of those relations a spec's profile keeps."""

from __future__ import annotations

import pytest

from pipeline.ranking.profile import SpecProfile
from pipeline.ranking.relations import Relation, relation, relations_from
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.support import TMDB_SPEC


def test_relation_rows_are_kept_per_spec_and_read_only() -> None:
    """A request reuses the rows of its history's operations: a kept row equals a fresh pass and cannot change."""
    profile = SpecProfile(load_catalogue(TMDB_SPEC, FetchSettings()))
    source = profile.index["GET /movie/{movie_id}"]
    row = relations_from(profile, source)
    assert relations_from(profile, source) is row
    assert row.tolist() == [int(relation(profile.ops[source], b)) for b in profile.ops]
    assert row[profile.index["GET /movie/{movie_id}/credits"]] == Relation.CHILD
    with pytest.raises(ValueError):
        row[0] = Relation.UNRELATED


def test_wordless_enum_values_and_fields_name_no_entity() -> None:
    """PeerTube's `GET /jobs/{state}` allows the state "", nic.at's suggestions come in a property named "": neither
    is an entity, so no operation produces or returns "" (session generation made ids for "" and crashed)."""
    spec = {
        "openapi": "3.0.0",
        "info": {"title": "jobs", "version": "1"},
        "paths": {
            "/jobs/{state}": {"get": {"parameters": [
                {"name": "state", "in": "path", "required": True,
                 "schema": {"type": "string", "enum": ["", "active", "failed"]}}],
                "responses": {"200": {"description": "ok"}}}},
            "/suggest": {"get": {"responses": {"200": {"description": "ok", "content": {"application/json": {
                "schema": {"type": "object", "properties": {"": {"type": "array", "items": {"type": "string"}}}}}}}}}},
        },
    }
    catalogue = load_catalogue(spec, FetchSettings())
    assert "" in catalogue.operations[0].path_params[0].enum and catalogue.operations[1].response_fields == ("",)
    profile = SpecProfile(catalogue)
    jobs, suggest = profile.index["GET /jobs/{state}"], profile.index["GET /suggest"]
    assert profile.ops[jobs].produces == {"active", "failed"}
    assert profile.ops[suggest].returns == frozenset()


def test_centrality_is_the_share_of_the_busiest_reach_a_candidate_leads_to() -> None:
    """TMDB's trending list names movies, shows and people, whose operations are most of the spec: it leads the
    spec; a person's images lead nowhere."""
    profile = SpecProfile(load_catalogue(TMDB_SPEC, FetchSettings()))
    centrality = profile.centrality
    assert centrality.max() == 1.0 and centrality[profile.index["GET /trending/{media_type}/{time_window}"]] == 1.0
    assert centrality[profile.index["GET /person/{person_id}/images"]] == 0.0
    assert centrality[profile.index["GET /tv/{tv_id}"]] > centrality[profile.index["GET /search/movie"]] > 0
