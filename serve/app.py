"""The Serve application graph: `build_app` is the `import_path` of configs/serve.*.yaml.

    HTTP -> Ingress -> SpecStore (fetch, parse, cache)
                    -> Embedder  (MiniLM, batched)
                    -> Ranker    (LightGBM; its model named by user_config, hot-swapped)
                                 -> SpecStore, Embedder (on a spec's first request per replica)
                    -> LearningLoop (one replica: label log writer, retraining jobs; /admin/retrain)

Each deployment scales on its own (replicas, autoscaling and resources come from the config file). With
`args.llm: true` the vLLM `CandidateGenerator` joins the graph as another handle of the Ingress, which asks it
when the router (pipeline/llm.py) says so.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from ray.serve import Application

from pipeline.settings import load_settings
from serve.embedder import EmbedderDeployment
from serve.generator import CandidateGenerator
from serve.ingress import Ingress
from serve.learning import LearningLoop
from serve.ranker import RankerDeployment
from serve.spec_store import SpecStoreDeployment


class AppArgs(BaseModel):
    """`args` of a Serve config's application."""

    model_config = ConfigDict(extra="forbid")

    # Overrides of configs/opensesame.yaml, section by section (e.g. {"cache": {"redis_url": "redis://..."}}).
    settings: dict[str, Any] = {}
    # Put the vLLM CandidateGenerator in the graph (model and router: the `llm` section of the settings).
    llm: bool = False


def build_app(args: dict[str, Any]) -> Application:
    parsed = AppArgs.model_validate(args)
    load_settings(overrides=parsed.settings)  # fail at deploy time, not in every replica, if they are invalid
    store = SpecStoreDeployment.options(name="SpecStore").bind(parsed.settings)
    embedder = EmbedderDeployment.options(name="Embedder").bind(parsed.settings)
    ranker = RankerDeployment.options(name="Ranker").bind(parsed.settings, store, embedder)
    learning = LearningLoop.options(name="LearningLoop").bind(parsed.settings)
    generator = CandidateGenerator.options(name="CandidateGenerator").bind(parsed.settings) if parsed.llm else None
    return Ingress.options(name="Ingress").bind(parsed.settings, store, embedder, ranker, learning, generator)
