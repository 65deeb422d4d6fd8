"""The real prepared SmolLM2 checkpoint in vLLM on CPU, offline: every operation it returns is real."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import TMDB_SPEC

from pipeline.adapters.llm_checkpoint import prepare
from pipeline.adapters.vllm_engine import OfflineLLM
from pipeline.llm.patch import parse_answer, patch
from pipeline.llm.prompt import build_messages
from pipeline.settings import PROJECT_ROOT, FetchSettings, LLMSettings
from pipeline.spec.load import load_catalogue
from pipeline.spec.matching import CallMatcher

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm() -> Iterator[OfflineLLM]:
    model = prepare(PROJECT_ROOT / "var" / "models" / "smollm2-135m-instruct")  # idempotent, ~30 s the first time
    with OfflineLLM(LLMSettings(model=str(model), kv_cache_bytes=128 * 1024 * 1024, max_model_len=1024)) as llm:
        yield llm


def test_constrained_answers_name_only_shortlisted_real_operations(llm: OfflineLLM) -> None:
    catalogue = load_catalogue(TMDB_SPEC, FetchSettings())
    matcher = CallMatcher(catalogue)
    ids = [op.id for op in catalogue.operations]
    requests = [
        (build_messages("who directed the movie Heat", [], ids[:20]), ids[:20]),
        (build_messages("show the cast of this show", ["GET /search/tv"], ids[20:40]), ids[20:40]),
        (build_messages("", ["GET /movie/550"], ids[5:25]), ids[5:25]),
    ]
    answers = llm.answer(requests)
    for answer, (_, shortlist) in zip(answers, requests):
        pairs = parse_answer(answer)
        assert pairs, f"no parsable answer: {answer!r}"
        assert all(op in shortlist for op, _ in pairs)  # the schema's enum held
        suggestions, stats = patch(pairs, catalogue, matcher, limit=3)
        assert suggestions and stats.dropped == 0 and stats.patched == 0
        assert all(s.endpoint in ids for s in suggestions)
