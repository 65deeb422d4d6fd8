"""How fast `opensesame import` reads, and how much memory it holds: synthetic traffic over a real spec, as a
gateway's JSON Lines log or a HAR export, imported by a process of its own (its peak RSS is the import's).

The traffic is the training generator's sessions (train/sessions.py) over the spec, with concrete ids, one user
per session, a session every few seconds and a second or two between calls; a share of requests are static
assets and health checks that the import must drop.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from train.sessions import SessionGenerator

_START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
_NOISE = ("GET /static/app.js", "GET /favicon.ico", "GET /healthz")


def _requests(spec: str, n: int, seed: int) -> Iterator[dict[str, Any]]:
    catalogue = load_catalogue(spec, FetchSettings())
    rng = random.Random(seed)
    generator = SessionGenerator(catalogue, rng)
    made = user = 0
    while made < n:
        session = generator.session()
        if session is None:
            continue
        user += 1
        at = _START + user * 3.0
        for call in session.calls:
            method, path = (rng.choice(_NOISE) if rng.random() < 0.05 else call).split(" ", 1)
            yield {"time": at, "method": method, "path": path, "status": 200, "user": f"user-{user}"}
            made += 1
            at += rng.uniform(0.5, 2.0)
            if made == n:
                return


def write_traffic(spec: str, n: int, fmt: str, target: Path, seed: int = 7) -> int:
    """`n` requests as JSON Lines (`jsonl`) or a HAR export (`har`); the file's size in bytes."""
    with target.open("w") as out:
        if fmt == "jsonl":
            for request in _requests(spec, n, seed):
                request["time"] = datetime.fromtimestamp(request["time"], UTC).isoformat()
                out.write(json.dumps(request) + "\n")
        else:
            out.write('{"log": {"version": "1.2", "creator": {"name": "opensesame import-bench"}, "entries": [\n')
            for number, request in enumerate(_requests(spec, n, seed)):
                entry = {"startedDateTime": datetime.fromtimestamp(request["time"], UTC).isoformat(),
                         "request": {"method": request["method"], "url": "https://api.example.test" + request["path"],
                                     "headers": [{"name": "Authorization", "value": f"Bearer {request['user']}"}]},
                         "response": {"status": 200, "content": {"mimeType": "application/json", "size": 0}}}
                out.write(("," if number else "") + json.dumps(entry) + "\n")
            out.write("]}}\n")
    return target.stat().st_size


def bench_import(spec: str, path: Path) -> dict[str, Any]:
    """A dry-run import of `path` in a process of its own: requests per second and that process's peak RSS."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ops.cli", "import", str(path), "--spec", spec, "--dry-run",
                           "--json"], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    report = json.loads(done.stdout)
    return {
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "requests": report["requests"],
        "matched": report["matched"],
        "sessions": report["sessions"],
        "import_seconds": report["seconds"],
        "requests_per_s": round(report["requests"] / report["seconds"]),
        "process_seconds": round(wall, 1),
        # The largest child this process waited for: run the bench in a process of its own.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }
