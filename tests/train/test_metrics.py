from __future__ import annotations

import math

import pytest

from train.metrics import hit_at, mrr, ndcg_at, summary


def test_metrics_against_hand_computed_values() -> None:
    ranks = [1, 3, None, 6]
    assert hit_at(ranks, 1) == 0.25
    assert hit_at(ranks, 3) == 0.5
    assert hit_at(ranks, 5) == 0.5
    assert mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 6) / 4)
    # NDCG@5 with one relevant item: 1/log2(rank+1) inside the cut-off, 0 outside.
    assert ndcg_at(ranks, 5) == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert summary([1, 1]) == {"hit@1": 1.0, "hit@3": 1.0, "hit@5": 1.0, "mrr": 1.0, "ndcg@5": 1.0}


def test_metrics_of_nothing_are_zero() -> None:
    assert summary([]) == {"hit@1": 0.0, "hit@3": 0.0, "hit@5": 0.0, "mrr": 0.0, "ndcg@5": 0.0}
    assert summary([None, None])["mrr"] == 0.0


def test_calibration_error_of_the_top_score_against_hand_computed_values() -> None:
    from train.metrics import calibration_error

    # Bin 0.9-1.0: scores 0.95 and 0.95, one right: |0.95 - 0.5| = 0.45 over half the cases; bin 0.1-0.2: score
    # 0.15, wrong, and 0.15, wrong: |0.15 - 0| = 0.15 over the other half.
    assert calibration_error([0.95, 0.95, 0.15, 0.15], [True, False, False, False]) == pytest.approx(0.3)
    assert calibration_error([0.8, 0.8, 0.8, 0.8, 0.8], [True, True, True, True, False]) == pytest.approx(0.0)
    assert calibration_error([1.0], [True]) == pytest.approx(0.0)  # a score of 1 is the last bin's
    assert calibration_error([], []) == 0.0
