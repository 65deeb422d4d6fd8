"""Milliseconds since a `time.perf_counter()` mark: the unit of every `timing` a response or a report shows."""

from __future__ import annotations

import time


def ms_since(mark: float) -> float:
    return round((time.perf_counter() - mark) * 1000, 3)
