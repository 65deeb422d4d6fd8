"""A private Ray cluster never outlives the process that started it: not after SIGTERM (sent twice, as `kill` to a
whole process group does), and not after SIGKILL, when nothing of the owner runs any more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from ops.reaper import group_alive

pytestmark = pytest.mark.slow

# The owner: starts a cluster the way `make serve` and the demo do, says its process group, waits to be stopped.
OWNER = """
import sys, time
from pathlib import Path
from ops.cluster import ClusterPorts, RayCluster, interrupt_on_term
interrupt_on_term()
cluster = RayCluster(ClusterPorts.free(), Path(sys.argv[1]), num_cpus=1)
cluster.start()
try:
    print(cluster._process.pid, cluster.dashboard_url, flush=True)
    time.sleep(600)
finally:
    cluster.stop()
    print("stopped", flush=True)
"""


@pytest.fixture
def owner() -> Iterator[tuple[subprocess.Popen[str], int]]:
    work = tempfile.mkdtemp(prefix="os-own-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    process = subprocess.Popen([sys.executable, "-c", OWNER, work], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    assert line, "the owner did not start its cluster"
    pgid = int(line.split()[0])
    assert group_alive(pgid)
    yield process, pgid
    if group_alive(pgid):  # a failed test must not leave the cluster behind either
        os.killpg(pgid, signal.SIGKILL)
    process.kill()
    process.wait()


def _gone_within(pgid: int, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if not group_alive(pgid):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def test_sigterm_twice_stops_the_whole_cluster(owner: tuple[subprocess.Popen[str], int]) -> None:
    process, pgid = owner
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # during the clean-up: must not cut it short
    assert process.wait(timeout=60) == -signal.SIGINT  # an uncaught KeyboardInterrupt, after a complete stop
    assert process.stdout is not None and "stopped" in process.stdout.read()
    assert not group_alive(pgid)


def test_a_killed_owner_leaves_no_cluster(owner: tuple[subprocess.Popen[str], int]) -> None:
    process, pgid = owner
    process.kill()
    process.wait()
    took = _gone_within(pgid, 30)
    print(f"cluster gone {took} s after its owner was killed")
    assert took is not None, "the reaper did not stop the cluster of a killed owner"
