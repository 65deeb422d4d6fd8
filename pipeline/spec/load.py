"""One call from any spec source to a catalogue, with its parse time: what the CLI and the stores use."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import OpenSesameError
from pipeline.settings import FetchSettings
from pipeline.spec.catalogue import Catalogue, build_catalogue
from pipeline.spec.source import read_spec
from pipeline.timing import ms_since


@dataclass(frozen=True, slots=True)
class InspectResult:
    """What `opensesame spec inspect --json` prints for one input."""

    source: str
    title: str | None
    openapi: str | None
    operations: int | None
    parse_ms: float
    error: str | None


def load_catalogue(source: str | Path | dict[str, Any], settings: FetchSettings) -> Catalogue:
    return build_catalogue(read_spec(source, settings))


def inspect_spec(source: str, settings: FetchSettings) -> InspectResult:
    """Parse one spec and summarise it; a failure is reported in `error`, never raised."""
    started = time.perf_counter()
    try:
        catalogue = load_catalogue(source, settings)
    except OpenSesameError as exc:
        elapsed = ms_since(started)
        return InspectResult(source, None, None, None, round(elapsed, 1), f"{type(exc).__name__}: {exc}")
    elapsed = ms_since(started)
    return InspectResult(
        source, catalogue.title, catalogue.openapi, len(catalogue.operations), round(elapsed, 1), None
    )
