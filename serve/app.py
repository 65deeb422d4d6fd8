"""The Serve application graph: `build_app` is the `import_path` of configs/serve.*.yaml.

    HTTP -> Ingress -> SpecStore (fetch, parse, cache)
                    -> Embedder  (MiniLM, batched)
                    -> Ranker    (LightGBM; its model named by user_config, hot-swapped)
                                 -> SpecStore, Embedder (on a spec's first request per replica)

Each deployment scales on its own (replicas, autoscaling and resources come from the config file). The vLLM
`CandidateGenerator` joins the graph as another handle of the Ingress when `llm` is configured.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from ray.serve import Application

from pipeline.settings import load_settings
from serve.embedder import EmbedderDeployment
from serve.ingress import Ingress
from serve.ranker import RankerDeployment
from serve.spec_store import SpecStoreDeployment


class AppArgs(BaseModel):
    """`args` of a Serve config's application."""

    model_config = ConfigDict(extra="forbid")

    # Overrides of configs/opensesame.yaml, section by section (e.g. {"cache": {"redis_url": "redis://..."}}).
    settings: dict[str, Any] = {}
    # The slot of the vLLM candidate generator: None keeps it out of the graph.
    llm: dict[str, Any] | None = None

    @field_validator("llm")
    @classmethod
    def _no_generator_yet(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            raise ValueError("this build has no candidate generator; set llm: null")
        return value


def build_app(args: dict[str, Any]) -> Application:
    parsed = AppArgs.model_validate(args)
    load_settings(overrides=parsed.settings)  # fail at deploy time, not in every replica, if they are invalid
    store = SpecStoreDeployment.options(name="SpecStore").bind(parsed.settings)
    embedder = EmbedderDeployment.options(name="Embedder").bind(parsed.settings)
    ranker = RankerDeployment.options(name="Ranker").bind(parsed.settings, store, embedder)
    return Ingress.options(name="Ingress").bind(parsed.settings, store, embedder, ranker)
