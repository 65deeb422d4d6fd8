"""Load against a running OpenSesame, as its users make it. Headless, with CSV output and an SLO verdict:

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 -u 16 \
        --ramp-s 15 --hold-s 60 --csv var/loadtest/run --slo-p99-ms 400 --slo-error-rate 0.01

`opensesame bench --url` runs exactly this and prints the table; `opensesame soak` and `opensesame overload` run
it with a timeline. Weighted scenarios (user classes):
- `WarmSession` (8): sessions on registered real specs (the specs of `--specs`, each registered once per process,
  as a console does at start): predict, report what was called (mostly the top prediction), predict again with
  the call in the history; half the predictions carry a prompt. A session lasts 5-15 calls, then the user starts
  another on another spec as another of `--user-pool` users (what a day of traffic looks like to the caches).
- `ColdSpec` (1): a prediction on a spec the service has never seen, by `spec_url` from a static server this
  file starts on 127.0.0.1 (each URL serves a distinct variant of a small fixture spec: fetch, parse, embed and
  prepare every time). The service must allow loopback fetches for it:
  `OPENSESAME__FETCH__ALLOW_ADDRESSES='["127.0.0.1/32"]' make serve`.
- `SpecRegistration` (1): registers a small spec inline (`POST /specs`), as clients do at session start; each a
  distinct variant, as `ColdSpec`'s are.

The `Ramp` shape climbs to `-u` users in `--ramp-s`, resets the statistics, holds for `--hold-s` and stops: the
CSV and the verdict describe the hold at full load only. The exit code is 1 when the hold missed an SLO: the p99
of warm `/predict` over `--slo-p99-ms`, or the share of failed requests over `--slo-error-rate`.

`--timeline FILE` appends a row every `--timeline-s` seconds of the whole run (ramp included): requests answered,
shed (429 or 503 with `Retry-After`) and failed, and the latency of the answered ones. With `--shed-ok` a shed
request is not a failure and its user waits the `Retry-After` it was given, as the Python client does: the
overload profile, where the question is whether the service sheds cleanly, not whether it sheds.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from gevent.lock import Semaphore
from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.env import Environment

from client.api import retry_after_s
from pipeline.spec.source import parse_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPECS = [ROOT.parent / "shared/data/specs/stripe.json", ROOT.parent / "shared/data/specs/github.json",
                 ROOT / "train/devsets/tmdb_oas.json"]
SMALL_SPECS = [ROOT / "tests/fixtures/billing_oas30.yaml", ROOT / "tests/fixtures/pets_swagger2.yaml",
               ROOT / "tests/fixtures/events_oas31.json"]
PROMPTS = ["", "get this paid", "list the recent ones", "create a new one for this customer", "delete it",
           "show me the details", "update its description", "what changed since yesterday"]
WARM_PREDICT = "/predict warm"
METHODS = ("get", "post", "put", "patch", "delete")
PARAM = re.compile(r"\{[^}]+\}")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--specs", default=",".join(str(p) for p in DEFAULT_SPECS if p.exists()),
                        help="comma-separated spec files for the warm sessions")
    parser.add_argument("--ramp-s", type=float, default=15, help="seconds to reach -u users")
    parser.add_argument("--hold-s", type=float, default=60, help="seconds at -u users (what the CSV reports)")
    parser.add_argument("--slo-p99-ms", type=float, default=400, help="warm /predict p99 SLO")
    parser.add_argument("--slo-error-rate", type=float, default=0.01, help="share of failed requests allowed")
    parser.add_argument("--user-pool", type=int, default=2000, help="distinct user_ids the warm sessions take turns as")
    parser.add_argument("--timeline", default="", help="CSV to append a row to every --timeline-s seconds")
    parser.add_argument("--timeline-s", type=float, default=60, help="seconds per timeline row")
    parser.add_argument("--requests-csv", default="", help="with --timeline: CSV to append every request to")
    parser.add_argument("--shed-ok", action="store_true",
                        help="429/503 with Retry-After are not failures; the user waits as told (overload)")


class Spec:
    """A spec file and the calls a session on it can make (its paths with ids filled in)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text()
        document = parse_text(self.text)  # as the service reads it (real specs carry YAML quirks)
        self.calls = [(method.upper(), path) for path, item in document.get("paths", {}).items()
                      for method in item if method in METHODS]
        self.id: str | None = None
        self.registering = Semaphore()  # one registration per spec and process; other specs do not wait

    def call(self, rng: random.Random) -> str:
        method, path = rng.choice(self.calls)
        filled = PARAM.sub(lambda _: f"id_{rng.randint(1, 999)}", path)
        return f"{method} {filled}"


_specs: list[Spec] = []


def warm_specs(environment: Environment) -> list[Spec]:
    if not _specs:
        paths = [Path(p) for p in environment.parsed_options.specs.split(",") if p]
        if not paths:
            raise SystemExit("no spec for the warm sessions: pass --specs FILE[,FILE...]")
        _specs.extend(Spec(p) for p in paths)
    return _specs


def register(user: FastHttpUser, spec: Spec) -> str | None:
    """The spec's id, registering it once per process (a 5 MB upload per user would be the load test's own load)."""
    with spec.registering:
        if spec.id is None:
            with user.client.post("/specs", json={"spec": spec.text}, name="/specs (warm)",
                                  catch_response=True) as response:
                if response.status_code != 201:
                    response.failure(f"{response.status_code}: {response.text[:200]}")
                    return None
                spec.id = response.json()["spec_id"]
    return spec.id


def _checked(response: Any, expected: int) -> dict[str, Any] | None:
    if response.status_code == expected:
        return response.json()
    delay = retry_after_s(response)  # a shed answer, read as the Python client reads it
    if delay is not None and _options().shed_ok:
        response.request_meta["name"] += " (shed)"  # the route's own row keeps the latency of answered requests
        response.success()
        gevent.sleep(delay)  # as the Python client does
        return None
    response.failure(f"{response.status_code}: {response.text[:200]}")
    return None


def _options() -> Any:
    return _environment.parsed_options


def variant(text: str, n: str) -> str:
    """The spec `text` with its title made unique by `n`: a spec the service has never seen."""
    return re.sub(r"(?m)^(\s*\"?title\"?\s*:\s*\"?)", rf"\g<1>Variant {n} ", text, count=1)


class WarmSession(FastHttpUser):
    weight = 8
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.new_session()

    def new_session(self) -> None:
        self.spec = self.rng.choice(warm_specs(self.environment))
        self.user_id = f"locust-{self.rng.randrange(self.environment.parsed_options.user_pool)}"
        self.history = [{"endpoint": self.spec.call(self.rng)}]
        self.calls_left = self.rng.randint(5, 15)

    @task
    def predict_then_call(self) -> None:
        self.calls_left -= 1
        if self.calls_left < 0:
            self.new_session()
        spec_id = register(self, self.spec)
        if spec_id is None:
            return
        body = {"user_id": self.user_id, "spec_id": spec_id, "events": self.history[-10:], "k": 5,
                "prompt": self.rng.choice(PROMPTS) if self.rng.random() < 0.5 else ""}
        with self.client.post("/predict", json=body, name=WARM_PREDICT, catch_response=True) as response:
            predicted = _checked(response, 200)
        if predicted is None:
            return
        if not predicted["predictions"] or self.rng.random() < 0.1:  # the user did something else
            call = self.spec.call(self.rng)
            feedback = {"prediction_id": predicted["prediction_id"], "called": call}
        else:
            rank = 1 if self.rng.random() < 0.7 else self.rng.randint(1, len(predicted["predictions"]))
            call = f"{predicted['predictions'][rank - 1]['method']} {predicted['predictions'][rank - 1]['path']}"
            feedback = {"prediction_id": predicted["prediction_id"], "accepted_rank": rank}
        with self.client.post("/feedback", json=feedback, name="/feedback", catch_response=True) as response:
            _checked(response, 202)
        self.history.append({"endpoint": call})


class _SpecVariants(BaseHTTPRequestHandler):
    """GET /<n>/<file>: the small fixture spec <file> with its title made unique by n (a spec never seen)."""

    def do_GET(self) -> None:
        _, n, name = self.path.split("/", 2)
        source = next((p for p in SMALL_SPECS if p.name == name), None)
        if source is None:
            self.send_error(404)
            return
        body = variant(source.read_text(), n).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class ColdSpec(FastHttpUser):
    weight = 1
    wait_time = between(0.5, 1.5)
    server: ThreadingHTTPServer | None = None
    counter: Iterator[int] = itertools.count()

    @classmethod
    def base(cls) -> str:
        if cls.server is None:
            cls.server = ThreadingHTTPServer(("127.0.0.1", 0), _SpecVariants)
            threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{cls.server.server_address[1]}"

    @task
    def predict_on_a_new_spec(self) -> None:
        spec = random.choice(SMALL_SPECS)
        url = f"{self.base()}/{next(self.counter)}-{random.getrandbits(32)}/{spec.name}"
        # A new spec from a new client each time: one client registering hundreds of specs would rightly hit its
        # cap of distinct specs (clients.max_specs, 429).
        body = {"user_id": f"cold-{uuid.uuid4().hex}", "spec_url": url, "prompt": random.choice(PROMPTS), "k": 5}
        with self.client.post("/predict", json=body, name="/predict cold spec_url", catch_response=True) as response:
            _checked(response, 200)


class SpecRegistration(FastHttpUser):
    weight = 1
    wait_time = between(0.5, 1.5)

    @task
    def register_inline(self) -> None:
        body = {"spec": variant(random.choice(SMALL_SPECS).read_text(), f"inline-{uuid.uuid4().hex}")}
        with self.client.post("/specs", json=body, name="/specs inline", catch_response=True) as response:
            _checked(response, 201)


class Timeline:
    """Requests of the current `--timeline-s` window by outcome, appended to `--timeline` as one row per window;
    with `--requests-csv`, every request (its end time, route, status, milliseconds), for percentiles over any
    stretch of the run."""

    FIELDS = ("time", "requests", "answered", "shed", "failed", "p50_ms", "p99_ms", "max_ms", "users", "statuses")

    def __init__(self, path: Path, window_s: float, requests: Path | None) -> None:
        self.path, self.window_s, self.requests_path = path, window_s, requests
        self.latencies: list[float] = []
        self.shed = self.failed = 0
        self.statuses: Counter[int] = Counter()
        self.requests: list[tuple[float, str, int, float]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for file, header in ((self.path, self.FIELDS), (requests, ("time", "route", "status", "ms"))):
            if file is not None and not file.exists():
                with file.open("w", newline="") as handle:
                    csv.writer(handle).writerow(header)

    def record(self, name: str, response: Any, response_time: float) -> None:
        status = getattr(response, "status_code", 0) or 0
        self.statuses[status] += 1
        if self.requests_path is not None:
            self.requests.append((round(time.time(), 3), name, status, round(response_time, 1)))
        if 200 <= status < 300:
            self.latencies.append(response_time)
        elif retry_after_s(response) is not None:
            self.shed += 1
        else:
            self.failed += 1

    def flush(self, users: int) -> None:
        latencies, shed, failed, statuses = self.latencies, self.shed, self.failed, self.statuses
        self.latencies, self.shed, self.failed, self.statuses = [], 0, 0, Counter()
        requests, self.requests = self.requests, []
        if self.requests_path is not None:
            with self.requests_path.open("a", newline="") as handle:
                csv.writer(handle).writerows(requests)
        p50, p99, top = (np.percentile(latencies, [50, 99]).round(1).tolist() + [round(max(latencies), 1)]
                         if latencies else ["", "", ""])
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([round(time.time(), 3), len(latencies) + shed + failed, len(latencies), shed,
                                         failed, p50, p99, top, users,
                                         " ".join(f"{k}:{v}" for k, v in sorted(statuses.items()))])

    def run(self, environment: Environment) -> None:
        while True:
            gevent.sleep(self.window_s)
            self.flush(environment.runner.user_count if environment.runner else 0)


_environment: Environment
_timeline: Timeline | None = None


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    global _environment, _timeline
    _environment = environment
    options = environment.parsed_options
    if options is not None and options.timeline:
        _timeline = Timeline(Path(options.timeline), options.timeline_s,
                             Path(options.requests_csv) if options.requests_csv else None)


@events.request.add_listener
def _record(name: str = "", response: Any = None, response_time: float = 0, **_: Any) -> None:
    if _timeline is not None:
        _timeline.record(name, response, response_time)


@events.test_start.add_listener
def _start_timeline(environment: Environment, **_: Any) -> None:
    if _timeline is not None:
        gevent.spawn(_timeline.run, environment)


@events.test_stop.add_listener
def _stop_timeline(environment: Environment, **_: Any) -> None:
    """The last, partial window: its time is when the load stopped."""
    if _timeline is not None:
        _timeline.flush(0)


class Ramp(LoadTestShape):
    """Up to -u users in --ramp-s, then the statistics are reset and -u users hold for --hold-s."""

    use_common_options = True
    _held = False

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options
        users, elapsed = options.num_users or 16, self.get_run_time()
        if elapsed < options.ramp_s:
            return max(1, math.ceil(users * elapsed / options.ramp_s)), users
        if not self._held:
            self._held = True
            self.runner.stats.reset_all()  # the verdict is about the hold at full load
        if elapsed < options.ramp_s + options.hold_s:
            return users, users
        return None


@events.quitting.add_listener
def _verdict(environment: Environment, **_: Any) -> None:
    """Exit code 1 when the hold missed an SLO; the reasons on stderr."""
    options, stats = environment.parsed_options, environment.stats
    missed = []
    warm = stats.get(WARM_PREDICT, "POST")
    p99 = warm.get_response_time_percentile(0.99) if warm.num_requests else math.inf
    if p99 > options.slo_p99_ms:
        missed.append(f"warm /predict p99 {p99:.0f} ms > {options.slo_p99_ms:.0f} ms")
    if stats.total.fail_ratio > options.slo_error_rate:
        missed.append(f"failed {stats.total.fail_ratio:.2%} of requests > {options.slo_error_rate:.2%}")
    environment.process_exit_code = 1 if missed else 0
    verdict = "SLO missed: " + "; ".join(missed) if missed else "SLO met"
    print(f"{verdict} (warm /predict p99 {p99:.0f} ms over {warm.num_requests} requests, "
          f"{stats.total.num_failures} failed of {stats.total.num_requests})", flush=True)

