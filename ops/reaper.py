"""Stopping a private Ray cluster: its whole process group, and also when the process that owns it is gone.

`stop_group` is how every cluster of ours stops: SIGTERM to the group (`ray start --block` and the GCS, raylet,
dashboard and workers it started all share it), then SIGKILL to whatever is left after the grace period.

The owner stops its cluster itself on Ctrl-C, SIGTERM or an exception; when it is killed outright (SIGKILL, the
OOM killer, a dying terminal) nothing of it runs any more, so each cluster gets a reaper, started in a session
of its own:

    python -m ops.reaper CLUSTER_PGID

It watches its parent (the owner); once the owner has exited, the kernel hands the reaper to another parent, and
the reaper stops the group. After a normal stop the group is gone and the reaper ends by itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 0.5


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # some member is not ours to signal, so the group still exists
        return True
    return True


def stop_group(pgid: int, grace_s: float = 10.0) -> None:
    """SIGTERM, up to `grace_s` for the group to leave, then SIGKILL (Serve's proxy alone drains for up to 30 s,
    which nothing here needs)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    pgid = int(argv[0])
    owner = os.getppid()
    # The owner's Ctrl-C is not ours: only its disappearance is.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.getppid() == owner and group_alive(pgid):
        time.sleep(POLL_S)
    if group_alive(pgid):
        stop_group(pgid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
