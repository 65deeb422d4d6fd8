"""Training's CPU-bound stages (parsing specs, building feature rows) spread over forked processes.

Forked, not spawned: a worker inherits what the parent built (module state set before the call: the corpus with
every spec's embeddings) without pickling it; only each item and its result travel. Results come back in the
items' order, so a training builds the same rows, and the same model, with any number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from typing import TypeVar

from threadpoolctl import threadpool_limits

T = TypeVar("T")
R = TypeVar("R")


def worker_count(requested: int) -> int:
    """`training.workers` as a number: 0 means one per CPU this process may use."""
    return requested or len(os.sched_getaffinity(0))


def _worker_start() -> None:
    # Each worker is one of `workers` processes on as many cores: numpy's BLAS threads on top would oversubscribe.
    threadpool_limits(1)
    # A fork inherits the parent's SIGTERM handler (the CLI's raises KeyboardInterrupt): a worker ends on it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def ordered_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`[fn(x) for x in items]`, on up to `workers` forked processes when there are several items and this process
    may have children (a daemonic one, a multiprocessing.Pool's worker, may not: it works alone)."""
    if workers <= 1 or len(items) <= 1 or multiprocessing.current_process().daemon:
        return [fn(x) for x in items]
    pool = multiprocessing.get_context("fork").Pool(min(workers, len(items)), _worker_start)
    try:
        results = pool.map(fn, items, chunksize=1)
    except BaseException:
        pool.terminate()  # an item failed: the others need not finish
        pool.join()
        raise
    # Closed and joined, not terminated as `with Pool` does: a worker signalled while it holds the task queue's lock
    # leaves another waiting on that lock forever (a `make test` run hung there).
    pool.close()
    pool.join()
    return results
