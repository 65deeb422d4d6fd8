"""Which specs train the ranker and which validate it: split by spec, never by problem.

A spec's split is a hash of its file name, so it is stable across runs and machines. Stripe and GitHub always
train (they are the richest workflows); APIs.guru specs split ~80/20. RestBench TMDB is the development set
and is refused here: it must never be trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pipeline.errors import OpenSesameError
from pipeline.settings import FetchSettings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.load import load_catalogue
from train.parallel import ordered_map

_DEV_SET_MARKERS = ("tmdb",)


@dataclass(frozen=True, slots=True)
class SpecSplit:
    train: list[Path]
    valid: list[Path]


def is_validation(path: Path, valid_percent: int) -> bool:
    digest = hashlib.sha256(path.name.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < valid_percent


def discover(data_dir: Path) -> list[Path]:
    """Spec files under `data_dir/specs` and `data_dir/apisguru` (the layout of ../shared/data)."""
    found = sorted((data_dir / "specs").glob("*.json")) + sorted((data_dir / "apisguru").glob("*.yaml"))
    found += sorted((data_dir / "apisguru").glob("*.json"))
    return [p for p in found if not any(m in p.name.lower() for m in _DEV_SET_MARKERS)]


def split(paths: list[Path], valid_percent: int, max_specs: int | None = None) -> SpecSplit:
    """Train and validation specs by a stable hash of each name; with `max_specs`, a stable sample of both in the
    same proportion."""
    train, valid = [], []
    for path in paths:
        always_train = path.parent.name == "specs"
        (valid if not always_train and is_validation(path, valid_percent) else train).append(path)
    if max_specs is not None:
        n_valid = max(1, round(max_specs * valid_percent / 100))
        train, valid = _sample(train, max_specs - n_valid), _sample(valid, n_valid)
    return SpecSplit(train, valid)


def _sample(paths: list[Path], n: int) -> list[Path]:
    return sorted(paths, key=lambda p: hashlib.sha256(b"sample:" + p.name.encode()).digest())[:n]


def _usable(path: Path, max_operations: int) -> Catalogue | None:
    try:
        catalogue = load_catalogue(path, FetchSettings(max_bytes=64 * 1024 * 1024))
    except OpenSesameError:
        return None
    return catalogue if 2 <= len(catalogue.operations) <= max_operations else None


def load_all(paths: list[Path], max_operations: int, workers: int = 1) -> list[tuple[str, Catalogue]]:
    """Parse every spec it can, on `workers` processes; specs that fail or are too large to be useful sessions are
    skipped."""
    catalogues = ordered_map(partial(_usable, max_operations=max_operations), paths, workers)
    return [(path.name, catalogue) for path, catalogue in zip(paths, catalogues) if catalogue is not None]
