"""In-process latency: replay synthetic sessions of a spec through `Predictor.predict` and time each call."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np

from pipeline.predict import Predictor
from pipeline.settings import FetchSettings
from pipeline.specs import load_catalogue
from train.sessions import Problem, SessionGenerator


def bench_in_process(
    predictor: Predictor, spec_source: str, fetch: FetchSettings, n: int, k: int, seed: int
) -> dict[str, Any]:
    catalogue = load_catalogue(spec_source, fetch)
    started = time.perf_counter()
    spec = predictor.prepare(catalogue)
    prepare_ms = (time.perf_counter() - started) * 1000
    generator = SessionGenerator(catalogue, random.Random(seed))
    problems: list[Problem] = []
    while len(problems) < n:
        session = generator.session()
        if session is not None:
            problems.extend(generator.problems(session, spec_source, f"bench-{len(problems)}"))
    problems = problems[:n]
    cold_prompts: list[float] = []
    warm: list[float] = []
    for problem in problems:
        t0 = time.perf_counter()
        predictor.predict(spec, problem.events, problem.prompt, k=k)
        cold_prompts.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()  # the same request again: the prompt embedding is now cached
        predictor.predict(spec, problem.events, problem.prompt, k=k)
        warm.append((time.perf_counter() - t0) * 1000)
    return {
        "spec": catalogue.title,
        "operations": len(catalogue.operations),
        "predictions": len(problems),
        "k": k,
        "prepare_spec_ms": round(prepare_ms, 1),
        "p50_ms": round(float(np.percentile(cold_prompts, 50)), 2),
        "p95_ms": round(float(np.percentile(cold_prompts, 95)), 2),
        "p50_ms_cached_prompt": round(float(np.percentile(warm, 50)), 2),
        "p95_ms_cached_prompt": round(float(np.percentile(warm, 95)), 2),
    }
