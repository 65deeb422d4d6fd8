"""Stopping a private Ray cluster: every process of its session, also when the process that owns it is gone.

`ray start` runs in a session of its own (`start_new_session`), and everything started under it stays in that
session after `ray start` has returned: the GCS, raylet, dashboard and workers, and what they start in turn even
when it takes a process group of its own, as Serve's HAProxy does (a stop by process group left it holding the
HTTP port). `stop_session` is how every cluster of ours stops: SIGTERM to each process of the session, then
SIGKILL to whatever is left after the grace period.

The owner stops its cluster itself on Ctrl-C, SIGTERM or an exception; when it is killed outright (SIGKILL, the
OOM killer, a dying terminal) nothing of it runs any more, so each cluster gets a reaper, started in a session
of its own:

    python -m ops.reaper CLUSTER_SID

It watches its parent (the owner); once the owner has exited, the kernel hands the reaper to another parent, and
the reaper stops the session. After a normal stop the session is empty and the reaper ends by itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil

POLL_S = 1.0  # each poll scans the process table (a few ms)


def members(sid: int) -> list[int]:
    """The live processes of session `sid`; zombies are dead already, only not yet reaped by their parent."""
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(process.pid) == sid:
                found.append(process.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def session_alive(sid: int) -> bool:
    return bool(members(sid))


def _signal_all(sid: int, sig: signal.Signals) -> bool:
    """Send `sig` to every process of the session; False when there was none."""
    pids = members(sid)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return bool(pids)


def stop_session(sid: int, grace_s: float = 10.0) -> None:
    """SIGTERM, up to `grace_s` for the session to leave, then SIGKILL (a Serve replica alone may drain for 30 s,
    which nothing here needs)."""
    if not _signal_all(sid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while session_alive(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    _signal_all(sid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    sid = int(argv[0])
    owner = os.getppid()
    # The owner's Ctrl-C is not ours: only its disappearance is.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.getppid() == owner and session_alive(sid):
        time.sleep(POLL_S)
    if os.getppid() != owner:
        stop_session(sid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
