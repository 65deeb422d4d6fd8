"""How operations relate in the path tree, and the rows of those relations a spec's profile keeps."""

from __future__ import annotations

import pytest

from pipeline.ranking.profile import SpecProfile
from pipeline.ranking.relations import Relation, relation, relations_from
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.conftest import TMDB_SPEC


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
