"""The score of a call is the probability that it is the next one: a softmax over the request's candidates at a
fitted temperature, beside a logit for a next call none of them is. The fit recovers both from requests drawn
from such a model, and the probabilities keep the ranker's order."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.ranking.model import Calibration, ModelMeta
from train.fit import calibrate


def _requests(temperature: float, outside: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                float]:
    """`n` requests of 5-30 candidates whose next call is drawn from the calibrated softmax; those answered by no
    candidate are left out, as training leaves out the requests whose pool missed the call."""
    rng = np.random.default_rng(seed)
    raws, labels, sizes, missed = [], [], [], 0
    for _ in range(n):
        raw = rng.normal(0.0, 1.5, size=int(rng.integers(5, 31)))
        p = Calibration(temperature=temperature, outside=outside).apply(raw)
        drawn = rng.choice(len(raw) + 1, p=[*p, 1.0 - p.sum()])
        if drawn == len(raw):
            missed += 1
            continue
        raws.append(raw)
        labels.append(np.eye(len(raw))[drawn])
        sizes.append(len(raw))
    return np.concatenate(raws), np.concatenate(labels), np.array(sizes), 1 - missed / n


def test_the_fit_recovers_the_temperature_and_the_outside_logit() -> None:
    raw, labels, sizes, recall = _requests(temperature=0.6, outside=1.0, n=4000, seed=7)
    fitted = calibrate(raw, labels, sizes, recall)
    assert fitted.temperature == pytest.approx(0.6, abs=0.05)
    assert fitted.outside == pytest.approx(1.0, abs=0.15)


def test_probabilities_keep_the_order_and_leave_room_for_a_call_not_offered() -> None:
    calibration = Calibration(temperature=1.2, outside=0.5)
    raw = np.array([2.0, -1.0, 0.5, 0.5, 3.0])
    p = calibration.apply(raw)
    assert list(np.argsort(-p, kind="stable")) == list(np.argsort(-raw, kind="stable"))
    assert p.sum() == pytest.approx(1.0 - 1.0 / (1.0 + np.exp(1.2 * raw - 0.5).sum()))
    assert calibration.apply(np.zeros(0)).shape == (0,)
    # Large raw scores do not overflow.
    assert np.isfinite(calibration.apply(np.array([900.0, 899.0]))).all()


def test_a_model_saved_with_the_per_candidate_fields_loads_with_the_defaults() -> None:
    meta = ModelMeta.model_validate({"schema_version": "v", "feature_names": [], "version": "x",
                                     "calibration": {"slope": 0.8, "intercept": -4.0}})
    assert meta.calibration == Calibration()
