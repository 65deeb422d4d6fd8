"""The OpenAPI document as the contract, fuzzed by schemathesis against the running app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from tests.serve.app.served import (
    ADMIN_TOKEN,
    OWNER_KEY,
    Served,
)
from tests.support import FIXTURES, poll

pytestmark = pytest.mark.slow


CONTRACT_SEEDS = (7, 1, 13, 21, 42)  # schemathesis runs, each with the stateful phase along our OpenAPI links


def test_the_openapi_document_is_the_contract(served: Served) -> None:
    """schemathesis (seeded, bounded) against the running app with every check, admin routes with the token:
    no failure and no 5xx. The routes' statuses and error body are documented, the request-level rules ("exactly
    one of") are `oneOf` in the schema; tests/schemathesis.toml says which answers to positive data are the
    spec's semantics. The retraining jobs its POST /admin/retrain starts are stopped, and what they promoted put
    back, before the next test."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    env = {**os.environ, "OPENSESAME_API_KEY": OWNER_KEY}  # the client routes take X-API-Key over Authorization
    # The seeds are independent runs against one app: side by side, not one after the other, each at a lower CPU
    # priority than the app and its Redis. Fuzzers at full priority on two cores can hold a Redis reply past the
    # store's time-out, and a spec lookup then answers "retry" (503), as it must in an outage; the clients of a
    # real service do not share its cores.
    runs = {
        seed: subprocess.Popen(
            ["nice", "-n", "10", str(schemathesis), "--config-file", str(FIXTURES.parent / "schemathesis.toml"),
             "--no-color", "run", served.base + "/openapi.json", "--checks", "all", "--max-examples", "15",
             "--seed", str(seed), "--workers", "1", "-H", f"Authorization: Bearer {ADMIN_TOKEN}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        for seed in CONTRACT_SEEDS
    }
    with served.restored():
        try:
            outputs = {seed: run.communicate(timeout=600)[0] for seed, run in runs.items()}
        finally:  # as subprocess.run does on a time-out: no run goes on against the app into the next test
            for run in runs.values():
                if run.poll() is None:
                    run.kill()
            jobs = JobSubmissionClient(served.cluster.dashboard_url)

            def active() -> list[str]:
                return [job.submission_id for job in jobs.list_jobs()
                        if job.status in (JobStatus.PENDING, JobStatus.RUNNING) and job.submission_id]

            for job_id in active():
                jobs.stop_job(job_id)
            poll(lambda: not active(), timeout_s=60)
    for seed, stdout in outputs.items():
        summary = stdout[stdout.rfind("SUMMARY"):]
        print(f"seed {seed}:", stdout[stdout.rfind("Stateful"):][:400], summary)
        assert runs[seed].returncode == 0, f"seed {seed}: " + stdout[-6000:]
        assert "Server error" not in summary and "Tested: 12" in summary, summary
