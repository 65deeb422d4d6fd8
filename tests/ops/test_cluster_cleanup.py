"""A private Ray cluster never outlives the process that started it: not after SIGTERM (sent twice, as `kill` to a
whole process group does), not after SIGKILL, when nothing of the owner runs any more, and not in a process that
left the cluster's process group (Serve's HAProxy does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from ops.reaper import members, session_alive, stop_session

pytestmark = pytest.mark.slow

# The owner: starts a cluster the way `make serve` and the demo do, says its session, waits to be stopped.
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
    sid = int(line.split()[0])
    assert session_alive(sid)
    yield process, sid
    stop_session(sid, grace_s=0)  # a failed test must not leave the cluster behind either
    process.kill()
    process.wait()


def _gone_within(sid: int, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if not session_alive(sid):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def test_sigterm_twice_stops_the_whole_cluster(owner: tuple[subprocess.Popen[str], int]) -> None:
    process, sid = owner
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # during the clean-up: must not cut it short
    assert process.wait(timeout=60) == -signal.SIGINT  # an uncaught KeyboardInterrupt, after a complete stop
    assert process.stdout is not None and "stopped" in process.stdout.read()
    assert not session_alive(sid)


def test_a_killed_owner_leaves_no_cluster(owner: tuple[subprocess.Popen[str], int]) -> None:
    process, sid = owner
    process.kill()
    process.wait()
    took = _gone_within(sid, 30)
    print(f"cluster gone {took} s after its owner was killed")
    assert took is not None, "the reaper did not stop the cluster of a killed owner"


# A cluster process whose child takes a process group of its own, as Serve's HAProxy does, then says its pid.
LEAVES_THE_GROUP = """
import subprocess, sys, time
child = "import os, time; os.setpgrp(); print(os.getpid(), flush=True); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", child])
time.sleep(600)
"""


def test_stopping_a_session_reaches_processes_that_left_its_process_group() -> None:
    leader = subprocess.Popen([sys.executable, "-c", LEAVES_THE_GROUP], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    try:
        assert os.getpgid(child) != leader.pid and os.getsid(child) == leader.pid
        assert set(members(leader.pid)) == {leader.pid, child}
        stop_session(leader.pid, grace_s=5)
        leader.wait(timeout=10)
        assert not session_alive(leader.pid)
        assert child not in members(leader.pid)  # a stop by process group would have left it running
    finally:
        stop_session(leader.pid, grace_s=0)
