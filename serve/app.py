"""The Serve application graph: `build_app` is the `import_path` of configs/serve.*.yaml.

    HTTP -> Ingress -> SpecStore (fetch, parse, cache: a spec sent by URL or body)
                    -> Ranker    (LightGBM; its model named by user_config, hot-swapped)
                                 -> Embedder (MiniLM, batched: a prompt it has not cached; a spec's operations on
                                              its first request per replica) and SpecStore (that spec)
                                 -> CandidateGenerator (vLLM, when the router asks it; `args.llm: true`)
                    -> LearningLoop (one replica: label log writer, retraining jobs; /admin/retrain)

The arguments are validated once, here: every deployment is bound to the same typed `Settings`, never a dict to
re-parse. Replicas, autoscaling, queue limits and resources of each deployment come from the config file only.
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
    settings = load_settings(overrides=parsed.settings)  # invalid settings fail the deploy, not every replica
    store = SpecStoreDeployment.options(name="SpecStore").bind(settings)
    embedder = EmbedderDeployment.options(name="Embedder").bind(settings)
    generator = CandidateGenerator.options(name="CandidateGenerator").bind(settings) if parsed.llm else None
    ranker = RankerDeployment.options(name="Ranker").bind(settings, store, embedder, generator)
    learning = LearningLoop.options(name="LearningLoop").bind(settings)
    return Ingress.options(name="Ingress").bind(settings, store, ranker, learning)
