"""Latency: replay synthetic sessions of a spec through `Predictor.predict` (in-process) or through the HTTP
API at a given concurrency (`ops.load.RequestLoop`), and time each call."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ops.load import RequestLoop
from pipeline.ranking.predict import Predictor
from pipeline.settings import FetchSettings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.load import load_catalogue
from train.sessions import Problem, SessionGenerator


def bench_problems(catalogue: Catalogue, spec_source: str, n: int, seed: int) -> list[Problem]:
    generator = SessionGenerator(catalogue, random.Random(seed))
    problems: list[Problem] = []
    while len(problems) < n:
        session = generator.session()
        if session is not None:
            problems.extend(generator.problems(session, spec_source, f"bench-{len(problems)}"))
    return problems[:n]


def bench_in_process(
    predictor: Predictor, spec_source: str, fetch: FetchSettings, n: int, k: int, seed: int
) -> dict[str, Any]:
    catalogue = load_catalogue(spec_source, fetch)
    started = time.perf_counter()
    spec = predictor.prepare(catalogue)
    prepare_ms = (time.perf_counter() - started) * 1000
    problems = bench_problems(catalogue, spec_source, n, seed)
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


def bench_http(
    base_url: str, spec_source: str, fetch: FetchSettings, n: int, k: int, seed: int, concurrency: list[int]
) -> dict[str, Any]:
    """`n` fresh problems per concurrency level (so prompts are not already cached) against a running service."""
    catalogue = load_catalogue(spec_source, fetch)
    problems = bench_problems(catalogue, spec_source, n * len(concurrency), seed)
    with httpx.Client(timeout=120) as client:
        body = {"spec_url": spec_source} if spec_source.startswith(("http://", "https://")) else {
            "spec": Path(spec_source).read_text()
        }
        registered = client.post(f"{base_url}/specs", json=body)
        registered.raise_for_status()
        spec_id = registered.json()["spec_id"]
        # The first prediction prepares the spec in the Ranker (embeddings, profile): not part of warm latency.
        client.post(f"{base_url}/predict", json={"user_id": "bench", "spec_id": spec_id, "k": k}).raise_for_status()
    levels = []
    for level, start in zip(concurrency, range(0, len(problems), n)):
        levels.append({"concurrency": level, **_http_level(base_url, spec_id, problems[start : start + n], k, level)})
    return {"spec": catalogue.title, "operations": len(catalogue.operations), "k": k, "levels": levels}


def _http_level(base_url: str, spec_id: str, problems: list[Problem], k: int, concurrency: int) -> dict[str, Any]:
    def body(client: int, n: int) -> dict[str, Any]:
        problem = problems[n]
        return {
            "user_id": f"bench-{client}",  # one user per client: each has its own quota, as real users do
            "spec_id": spec_id,
            "events": [e.model_dump(mode="json", exclude_none=True) for e in problem.events],
            "prompt": problem.prompt,
            "k": k,
        }

    with RequestLoop(f"{base_url}/predict", body, clients=concurrency, total=len(problems)) as loop:
        loop.wait()
    return loop.summary()
