"""The LightGBM lambdarank model as a self-describing artefact.

A model directory holds `model.txt` (the booster) and `meta.json` (feature-schema version, feature names,
score calibration, the spec-agnostic transition patterns learned with it, and provenance). Loading a model
whose schema differs from this code's is refused: its columns would mean something else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from pipeline.errors import OpenSesameError
from pipeline.ranking.embedding import STOCK_EMBEDDER
from pipeline.ranking.features import FEATURE_NAMES, SCHEMA_VERSION
from pipeline.ranking.stats import PatternStats

# LightGBM, which imports scikit-learn and SciPy (~65 MB per process), is imported where a booster is loaded: the
# Ingress and the LearningLoop import this module for its errors, never to score.
if TYPE_CHECKING:
    import lightgbm as lgb


class ModelSchemaError(OpenSesameError):
    """The model was trained on another feature schema than this code computes."""


class ModelNotFoundError(OpenSesameError):
    """No model at the given location."""


class Calibration(BaseModel):
    """Raw lambdarank scores of one request's candidates to P(this is the next call): a softmax over them at a
    `temperature`, beside an `outside` logit for a next call none of them is (the pool misses some). Fitted on
    the held-out specs' requests (`train.fit.calibrate`); monotone within a request, so it never reorders. A model
    saved with the older per-candidate Platt fields loads with the defaults: lambdarank's raw scores are nearly
    log-odds between candidates already (docs/decisions.md, "A score is a softmax")."""

    temperature: float = Field(1.0, gt=0)
    outside: float = 0.0

    def apply(self, raw: np.ndarray) -> np.ndarray:
        if len(raw) == 0:
            return np.zeros(0)
        z = self.temperature * raw
        top = max(float(z.max()), self.outside)
        e = np.exp(z - top)
        return e / (e.sum() + np.exp(self.outside - top))


class ModelMeta(BaseModel):
    schema_version: str
    feature_names: list[str]
    version: str = Field(description="shown in every response: a registry version or a content hash")
    calibration: Calibration = Calibration()
    patterns: PatternStats = PatternStats()
    embedder: str = Field(STOCK_EMBEDDER, description="the embedder its prompt/operation features came from")
    info: dict[str, Any] = {}


def model_signature(directory: Path) -> tuple[str, str] | None:
    """(feature schema, embedder) of the model saved in `directory`, without loading it; None when there is none."""
    meta_path = directory / "meta.json"
    if not meta_path.exists() or not (directory / "model.txt").exists():
        return None
    meta = json.loads(meta_path.read_text())
    return str(meta.get("schema_version")), str(meta.get("embedder", STOCK_EMBEDDER))


class RankerModel:
    def __init__(self, booster: lgb.Booster, meta: ModelMeta) -> None:
        if meta.schema_version != SCHEMA_VERSION or tuple(meta.feature_names) != FEATURE_NAMES:
            raise ModelSchemaError(
                f"model feature schema {meta.schema_version!r} does not match this code's {SCHEMA_VERSION!r}; "
                "retrain with `opensesame train`"
            )
        self.booster = booster
        self.meta = meta

    @property
    def version(self) -> str:
        return self.meta.version

    def relabel(self, version: str) -> RankerModel:
        """The same model under the name a registry gave it (responses then say `opensesame-ranker/v3`)."""
        return RankerModel(self.booster, self.meta.model_copy(update={"version": version}))

    @property
    def patterns(self) -> PatternStats:
        return self.meta.patterns

    def raw_scores(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return self.booster.predict(X, num_threads=1)

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        return self.meta.calibration.apply(raw)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "model.txt"))
        (directory / "meta.json").write_text(self.meta.model_dump_json(indent=1))

    @classmethod
    def load(cls, directory: Path) -> RankerModel:
        meta_path, model_path = directory / "meta.json", directory / "model.txt"
        if not meta_path.exists() or not model_path.exists():
            raise ModelNotFoundError(f"no ranker model in {directory}; train one with `opensesame train`")
        meta = ModelMeta.model_validate(json.loads(meta_path.read_text()))
        import lightgbm as lgb

        return cls(lgb.Booster(model_file=str(model_path)), meta)
