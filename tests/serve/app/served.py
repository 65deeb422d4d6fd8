"""The served app as this directory's tests see it (`Served`), the keys and tokens its config holds, and the
specs they send. The fixture that starts it is in conftest.py."""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ops.cluster import RayCluster
from ops.load import RequestLoop
from pipeline.adapters import registry
from pipeline.adapters.serve_api import deploy, deployment, wait_running
from pipeline.settings import RegistrySettings
from tests.support import FIXTURES, RedisServer

BILLING = (FIXTURES / "billing_oas30.yaml").read_text()
REQUESTS = (FIXTURES / "requests_oas30.yaml").read_text()
STREAM = "test:feedback"
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OWNER_KEY = "os_test-owner-key"  # a client with the (generous) default limits
TIGHT_KEY = "os_test-tight-key"  # 1 request/s after a burst of 3, one registered spec


def key_entry(key: str, name: str, **limits: Any) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(key.encode()).hexdigest(), "name": name, **limits}


@dataclass(frozen=True)
class EarlyAnswer:
    """The app's status when /readyz first answered, and a prediction asked then with a budget that asks the LLM."""

    app_status: str
    predicted: httpx.Response


@dataclass
class Served:
    base: str
    cluster: RayCluster
    config: dict[str, Any]
    versions: list[registry.RegisteredVersion]
    redis: RedisServer
    spec_url: str
    spool: Path
    labels: Path
    early: EarlyAnswer

    def post(self, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return httpx.post(self.base + path, json=body, timeout=60, **kw)

    def predict(self, **body: Any) -> httpx.Response:
        return self.post("/predict", {"user_id": "u1", **body})

    @property
    def settings(self) -> dict[str, Any]:
        return self.config["applications"][0]["args"]["settings"]

    @property
    def key_prefix(self) -> str:
        """What the app's keys in Redis start with (its settings' `cache.key_prefix`)."""
        return self.settings["cache"]["key_prefix"]

    @property
    def registry(self) -> RegistrySettings:
        return RegistrySettings(**self.settings["registry"])

    def redeploy(self, ranker: dict[str, Any] | None = None,
                 change: Callable[[dict[str, Any]], None] | None = None) -> None:
        """`serve deploy` of this fixture's config with the Ranker's `user_config` replaced by `ranker` and
        `change` applied (the fixture's own config when neither is given); waits until the app runs it."""
        config = copy.deepcopy(self.config)
        if ranker is not None:
            deployment(config, "Ranker")["user_config"] = ranker
        if change is not None:
            change(config)
        submitted = time.time()
        deploy(self.cluster.dashboard_url, config)
        wait_running(self.cluster.dashboard_url, since=submitted)

    @contextmanager
    def restored(self) -> Iterator[None]:
        """Whatever the block deploys or promotes, afterwards the app runs this fixture's config again (the first
        version, by its URI) and the registry's alias names the first version."""
        try:
            yield
        finally:
            registry.promote(self.versions[0], self.registry.alias, self.registry)
            self.redeploy()

    def billing_load(self, pause_s: float = 0.0) -> RequestLoop:
        """Four closed-loop clients predicting on the billing spec by URL, each a user of its own."""
        def body(client: int, n: int) -> dict[str, Any]:
            return {"user_id": f"load-{client}", "spec_url": self.spec_url,
                    "events": [{"endpoint": f"GET /v1/invoices/in_{n}"}]}

        return RequestLoop(self.base + "/predict", body, clients=4, pause_s=pause_s)
