"""vLLM on either side of the service: the offline engine for `opensesame eval --llm` and training features,
and the engine arguments and sampling parameters the Serve `CandidateGenerator` shares with it.

vLLM is imported inside the functions: importing this module stays cheap and Ray-free.
"""

from __future__ import annotations

import os
from typing import Any, Self

from pipeline.llm.prompt import output_schema
from pipeline.settings import LLMSettings

# vLLM logs to stdout by default, which would mix its lines into `opensesame eval --llm --json`.
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


def engine_kwargs(settings: LLMSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": settings.model,
        "dtype": settings.dtype,
        "max_model_len": settings.max_model_len,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "enable_prefix_caching": settings.enable_prefix_caching,
    }
    if settings.kv_cache_bytes is not None:
        # CPU: a fixed cache, and no graph capture (faster start; the CPU backend gains nothing from it).
        kwargs |= {"kv_cache_memory_bytes": settings.kv_cache_bytes, "enforce_eager": True}
    else:
        kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
    return kwargs


def sampling_params(settings: LLMSettings, shortlist: list[str]) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return SamplingParams(
        max_tokens=settings.max_tokens,
        temperature=0.0,  # the most likely calls, reproducibly
        structured_outputs=StructuredOutputsParams(json=output_schema(shortlist, settings.max_calls)),
    )


def render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class OfflineLLM:
    """Batch generation in this process (scripts using it need an `if __name__ == "__main__":` guard: vLLM
    starts its engine core with spawn)."""

    def __init__(self, settings: LLMSettings) -> None:
        from vllm import LLM

        self.settings = settings
        self._llm = LLM(**engine_kwargs(settings))
        self._tokenizer = self._llm.get_tokenizer()

    def answer(self, requests: list[tuple[list[dict[str, str]], list[str]]]) -> list[str]:
        """One raw answer per (messages, shortlist), generated as one batch."""
        prompts = [render(self._tokenizer, messages) for messages, _ in requests]
        params = [sampling_params(self.settings, shortlist) for _, shortlist in requests]
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        return [output.outputs[0].text for output in outputs]

    def close(self) -> None:
        """Stops the engine core process now. Left to vLLM's exit-time finalizer, the shutdown logs to a stream
        the interpreter has already closed and prints "Logging error" tracebacks."""
        self._llm.llm_engine.engine_core.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
