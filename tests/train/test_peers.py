"""The simple peers every evaluation reports beside the ranker, on the real packaged MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.ranking.context import Event, PreparedSpec
from pipeline.ranking.embedding import OperationEmbeddings
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.support import FIXTURES
from train.peers import Cosine, Peers, rank_of


@pytest.fixture(scope="module")
def billing(minilm) -> PreparedSpec:
    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    return PreparedSpec.build(catalogue, OperationEmbeddings(minilm).get(catalogue))


def test_ties_go_to_catalogue_order() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.5])
    assert [rank_of(scores, i) for i in range(4)] == [2, 1, 3, 4]


def test_without_a_tuned_embedder_the_peers_are_bm25_minilm_and_the_repeat(minilm) -> None:
    assert Peers(stock=Cosine.of(minilm), tuned=Cosine.of(minilm)).names == ["bm25", "minilm", "repeat+minilm"]


def test_bm25_finds_the_words_of_the_prompt(minilm, billing) -> None:
    ranks = Peers(stock=Cosine.of(minilm)).ranks(billing, [], "void an invoice", "POST /invoices/{invoice}/void")
    assert ranks["bm25"] == 1 and ranks["minilm"] == 1


def test_the_repeat_peer_ranks_the_last_call_first_and_the_rest_by_cosine(minilm, billing) -> None:
    history = [Event(endpoint="GET /v1/invoices/in_1")]
    peers = Peers(stock=Cosine.of(minilm))
    assert peers.ranks(billing, history, "void an invoice", "GET /invoices/{invoice}")["repeat+minilm"] == 1
    # The expected operation is second for the repeat peer wherever cosine put it first.
    ranks = peers.ranks(billing, history, "void an invoice", "POST /invoices/{invoice}/void")
    assert ranks["minilm"] == 1 and ranks["repeat+minilm"] == 2


def test_with_nothing_to_go_on_a_peer_answers_in_catalogue_order(minilm, billing) -> None:
    first, third = (billing.catalogue.operations[i].id for i in (0, 2))
    peers = Peers(stock=Cosine.of(minilm))
    assert peers.ranks(billing, [], "", first) == {"bm25": 1, "minilm": 1, "repeat+minilm": 1}
    assert peers.ranks(billing, [], "", third)["bm25"] == 3
