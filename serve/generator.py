"""`CandidateGenerator` deployment: vLLM's async engine proposing next calls from a shortlist.

The engine batches concurrent requests itself (continuous batching), so a replica takes many requests at once
(`max_ongoing_requests`); its output is constrained to the shortlist's operation ids by a JSON schema. The
answer is checked against the spec (auto-patch) by the Ranker, which holds the spec's matcher.
"""

from __future__ import annotations

import uuid

from ray import serve

from pipeline.adapters.vllm_engine import engine_kwargs, render, sampling_params
from pipeline.settings import Settings


@serve.deployment
class CandidateGenerator:
    def __init__(self, settings: Settings) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.settings = settings.llm
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(self.settings)))
        self.tokenizer = self.engine.get_tokenizer()

    async def answer(self, messages: list[dict[str, str]], shortlist: list[str]) -> str:
        """The raw JSON answer (the `pipeline.llm.consult.Generator` contract)."""
        final = None
        params = sampling_params(self.settings, shortlist)
        async for output in self.engine.generate(render(self.tokenizer, messages), params, uuid.uuid4().hex):
            final = output
        return final.outputs[0].text if final is not None and final.outputs else ""

    async def check_health(self) -> None:
        await self.engine.check_health()  # raises once the engine core has died: Serve restarts the replica
