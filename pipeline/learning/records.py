"""What was predicted and what happened next: the records, their codecs and their keys in the shared store.

Every prediction is stored (`pred:<id>`, with a TTL) with what retraining needs: the problem, the candidate
pool and its feature matrix, the model version. A `FeedbackRecord` is one label of it (`labels.py` makes them).
"""

from __future__ import annotations

import base64
import json
import zlib
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from pipeline.cache import SharedStore
from pipeline.errors import OpenSesameError
from pipeline.lookups import lookup
from pipeline.ranking.features import SCHEMA_VERSION
from pipeline.ranking.predict import PredictOutcome
from pipeline.ranking.stats import HabitOffer, PatternOffer, PromptVector

Outcome = Literal["called", "accepted", "none"]
# explicit: /feedback; implicit: the next /predict showed the call; imported: a session of imported traffic.
LabelSource = Literal["explicit", "implicit", "imported"]


class PredictionNotFoundError(OpenSesameError):
    """Feedback names a prediction that does not exist (or has expired)."""


class FeedbackMismatchError(OpenSesameError):
    """Feedback that contradicts its prediction (a rank that was not returned, a call outside the spec)."""


class PredictionRecord(BaseModel):
    prediction_id: str
    user_id: str
    spec_id: str
    events: list[str]
    prompt: str
    predicted: list[str]  # operation ids, best first
    model_version: str
    created_at: datetime
    last_operation: str | None = None  # the operation the prediction followed (None: no matched history)
    candidates: list[str] = Field(default_factory=list, description="candidate pool, in feature-row order")
    feature_schema: str = ""
    features: str = Field("", description="candidate feature matrix: float32, zlib, base64 (see encode_features)")
    owner: str | None = Field(None, description="the API key's quota id that made it: only that key may label it")
    shadowed: bool = Field(False, description="a shadow model also ranked it (pipeline/learning/acceptance.py)")
    prompt_vector: str = Field("", description="the prompt's unit vector: float16, base64 (see encode_prompt)")
    embedder: str = Field("", description="the embedder that made prompt_vector")
    patterns: PatternOffer | None = Field(None, description="the patterns offered, for the online pattern counts")
    habit: HabitOffer | None = Field(None, description="the mixture's halves, for the weight of the spec's counts")

    def feature_matrix(self) -> np.ndarray:
        return decode_features(self.features, len(self.candidates))

    @classmethod
    def of(cls, outcome: PredictOutcome, *, prediction_id: str, user_id: str, spec_id: str, events: list[str],
           prompt: str, created_at: datetime, **extra: Any) -> PredictionRecord:
        """The record of a prediction the service answered with `outcome` (features are encoded by the caller,
        where it pays: `encode_features`)."""
        return cls(
            prediction_id=prediction_id, user_id=user_id, spec_id=spec_id, events=events, prompt=prompt,
            predicted=[p.endpoint for p in outcome.predictions], model_version=outcome.model_version,
            created_at=created_at, last_operation=outcome.last_operation, candidates=outcome.candidates,
            feature_schema=SCHEMA_VERSION, patterns=outcome.patterns, habit=outcome.habit, **encode_prompt(outcome.prompt), **extra,
        )

    def prompt_of(self) -> PromptVector | None:
        """The prompt as the online counts remember it with its label; None without a prompt."""
        if not self.prompt_vector:
            return None
        return PromptVector(self.embedder, np.frombuffer(base64.b64decode(self.prompt_vector), dtype=np.float16))


def encode_prompt(prompt: PromptVector | None) -> dict[str, str]:
    """The record fields of a prompt vector: float16 halves its size, and a cosine needs no more precision."""
    if prompt is None:
        return {}
    return {"prompt_vector": base64.b64encode(prompt.vector.astype(np.float16).tobytes()).decode(),
            "embedder": prompt.space}


def encode_features(X: np.ndarray) -> str:
    """~50 candidates x ~60 features, mostly small or NaN: compresses to a few KB per stored prediction."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(X, dtype=np.float32).tobytes(), 6)).decode()


def decode_features(encoded: str, rows: int) -> np.ndarray:
    if not encoded or rows == 0:
        return np.zeros((rows, 0), dtype=np.float32)
    return np.frombuffer(zlib.decompress(base64.b64decode(encoded)), dtype=np.float32).reshape(rows, -1)


class FeedbackRecord(PredictionRecord):
    """One label: after `events` (+ `prompt`) on `spec_id`, the user's next call was `endpoint` (or nothing)."""

    source: LabelSource = "explicit"
    outcome: Outcome
    endpoint: str | None = Field(None, description="operation id of the next call; None for outcome 'none'")
    called: str | None = Field(None, description="the call as the client reported it")
    rank: int | None = Field(None, description="1-based rank of `endpoint` among the predictions, if there")
    received_at: datetime


def prediction_key(prediction_id: str) -> str:
    return f"pred:{prediction_id}"


def label_key(prediction_id: str) -> str:
    return f"label:{prediction_id}"


def last_prediction_key(user_id: str, spec_id: str, owner: str | None = None) -> str:
    """A user's latest prediction on a spec; user ids are the clients' own, so each key has its own users."""
    return f"last:{spec_id}:{owner}:{user_id}" if owner else f"last:{spec_id}:{user_id}"


def save_prediction(store: SharedStore, record: PredictionRecord, ttl_s: int) -> None:
    store.set(prediction_key(record.prediction_id), record.model_dump_json().encode(), ttl_s)


def load_prediction(store: SharedStore, prediction_id: str) -> PredictionRecord:
    # A miss while Redis is (or just was) unreachable: the client should come back, not drop its label.
    raw = lookup(store, prediction_key(prediction_id), f"prediction {prediction_id!r} (its label is not recorded)")
    if raw is None:
        raise PredictionNotFoundError(
            f"unknown prediction_id {prediction_id!r}: use the prediction_id a /predict response returned "
            "(predictions are kept for cache.prediction_ttl_s)"
        )
    return PredictionRecord.model_validate(json.loads(raw))
