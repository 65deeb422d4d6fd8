"""Per-client quotas: shared by replicas through a real Redis, kept in-process while Redis is off or down."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline.adapters.kv import ResilientStore
from pipeline.quota import Registrations, TokenBuckets
from pipeline.settings import CacheSettings, load_settings
from tests.support import RedisServer


def _replica(url: str | None, prefix: str) -> ResilientStore:
    return ResilientStore(CacheSettings(redis_url=url, key_prefix=prefix, retry_after_s=0.2))


def test_a_bucket_allows_the_burst_then_the_rate() -> None:
    buckets = TokenBuckets()
    waits = [buckets.take("c", rate_per_s=10, burst=3) for _ in range(4)]
    assert waits[:3] == [0, 0, 0] and 0.05 < waits[3] <= 0.1  # one token every 0.1 s
    assert buckets.take("other", rate_per_s=10, burst=3) == 0  # every client has its own
    time.sleep(0.11)
    assert buckets.take("c", rate_per_s=10, burst=3) == 0


def test_registrations_count_distinct_members_per_window() -> None:
    registrations = Registrations()
    assert registrations.add("c", "a", ttl_s=60)[0] == 1
    assert registrations.add("c", "a", ttl_s=60)[0] == 1  # the same spec again is no new registration
    size, left = registrations.add("c", "b", ttl_s=60)
    assert size == 2 and 59 < left <= 60
    assert registrations.members("c") == {"a", "b"} and registrations.members("other") == frozenset()
    registrations.remove("c", "b")
    assert registrations.add("c", "a", ttl_s=60)[0] == 1
    assert registrations.members("c") == {"a"}


def test_replicas_share_one_bucket_and_one_cap_through_redis(redis_server: RedisServer) -> None:
    prefix = f"q{time.time_ns()}:"
    one, two = _replica(redis_server.url, prefix), _replica(redis_server.url, prefix)
    waits = [replica.take_token("quota:c", 1, 4) for replica in (one, two, one, two, one)]
    assert waits[:4] == [0, 0, 0, 0] and 0.9 < waits[4] <= 1.0  # the fifth over both replicas waits ~1 s
    assert one.add_member("specs:c", "s1", 60)[0] == 1
    size, left = two.add_member("specs:c", "s2", 60)
    assert size == 2 and 0 < left <= 60
    assert one.members("specs:c") == two.members("specs:c") == {"s1", "s2"}
    two.remove_member("specs:c", "s2")
    assert one.add_member("specs:c", "s1", 60)[0] == 1


def test_a_dead_redis_falls_back_to_each_replica_alone() -> None:
    down = _replica("redis://127.0.0.1:1/0", f"q{time.time_ns()}:")  # nothing listens there
    assert [down.take_token("quota:c", 1, 2) for _ in range(3)][:2] == [0, 0]
    assert down.take_token("quota:c", 1, 2) > 0
    assert down.add_member("specs:c", "s1", 60)[0] == 1 and down.add_member("specs:c", "s2", 60)[0] == 2
    assert down.members("specs:c") == {"s1", "s2"}


def test_keys_come_hashed_from_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"sha256": "a" * 64, "name": "acme", "rate_per_s": 5}
    (tmp_path / "opensesame__clients__api_keys").write_text(json.dumps([entry]))
    monkeypatch.setenv("OPENSESAME_SECRETS_DIR", str(tmp_path))
    clients = load_settings(Path("/nonexistent.yaml")).clients
    assert [(k.name, k.rate_per_s, k.burst) for k in clients.api_keys] == [("acme", 5.0, None)]
