"""Load against a running OpenSesame, as its users make it. Headless, with CSV output and an SLO verdict:

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 -u 16 \
        --ramp-s 15 --hold-s 60 --csv var/loadtest/run --slo-p99-ms 400 --slo-error-rate 0.01

`opensesame bench --locust` runs exactly this and prints the table. Weighted scenarios (user classes):
- `WarmSession` (8): a session on a registered real spec (the specs of `--specs`, registered once per process, as
  a console does at start): predict, report what was called (mostly the top prediction), predict again with the
  call in the history; half the predictions carry a prompt.
- `ColdSpec` (1): a prediction on a spec the service has never seen, by `spec_url` from a static server this
  file starts on 127.0.0.1 (each URL serves a distinct variant of a small fixture spec: fetch, parse, embed and
  prepare every time). The service must allow loopback fetches for it:
  `OPENSESAME__FETCH__ALLOW_ADDRESSES='["127.0.0.1/32"]' make serve`.
- `SpecRegistration` (1): registers a small spec inline (`POST /specs`), as clients do at session start.

The `Ramp` shape climbs to `-u` users in `--ramp-s`, resets the statistics, holds for `--hold-s` and stops: the
CSV and the verdict describe the hold at full load only. The exit code is 1 when the hold missed an SLO: the p99
of warm `/predict` over `--slo-p99-ms`, or the share of failed requests over `--slo-error-rate`.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from gevent.lock import Semaphore
from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.env import Environment

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


class Spec:
    """A spec file and the calls a session on it can make (its paths with ids filled in)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text()
        document = json.loads(self.text) if path.suffix == ".json" else yaml.safe_load(self.text)
        self.calls = [(method.upper(), path) for path, item in document.get("paths", {}).items()
                      for method in item if method in METHODS]
        self.id: str | None = None

    def call(self, rng: random.Random) -> str:
        method, path = rng.choice(self.calls)
        filled = PARAM.sub(lambda _: f"id_{rng.randint(1, 999)}", path)
        return f"{method} {filled}"


_specs: list[Spec] = []
_registering = Semaphore()


def warm_specs(environment: Environment) -> list[Spec]:
    if not _specs:
        paths = [Path(p) for p in environment.parsed_options.specs.split(",") if p]
        if not paths:
            raise SystemExit("no spec for the warm sessions: pass --specs FILE[,FILE...]")
        _specs.extend(Spec(p) for p in paths)
    return _specs


def register(user: FastHttpUser, spec: Spec) -> str | None:
    """The spec's id, registering it once per process (a 5 MB upload per user would be the load test's own load)."""
    with _registering:
        if spec.id is None:
            with user.client.post("/specs", json={"spec": spec.text}, name="/specs (warm)",
                                  catch_response=True) as response:
                if response.status_code != 201:
                    response.failure(f"{response.status_code}: {response.text[:200]}")
                    return None
                spec.id = response.json()["spec_id"]
    return spec.id


def _checked(response: Any, expected: int) -> dict[str, Any] | None:
    if response.status_code != expected:
        response.failure(f"{response.status_code}: {response.text[:200]}")
        return None
    return response.json()


class WarmSession(FastHttpUser):
    weight = 8
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.spec = self.rng.choice(warm_specs(self.environment))
        self.user_id = f"locust-{id(self)}"
        self.history = [{"endpoint": self.spec.call(self.rng)}]

    @task
    def predict_then_call(self) -> None:
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
        body = re.sub(r"(?m)^(\s*\"?title\"?\s*:\s*\"?)", rf"\g<1>Variant {n} ", source.read_text(), count=1).encode()
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
        body = {"spec": random.choice(SMALL_SPECS).read_text()}
        with self.client.post("/specs", json=body, name="/specs inline", catch_response=True) as response:
            _checked(response, 201)


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

