"""An import of many traffic files over Ray Data, on every node of the cluster: logs larger than one machine.

Each file (a path every node sees, or a URI: `s3://`, `gs://`, `file://`) is read and matched by a task of its
own, then the requests are grouped by who made them and each caller's requests, in time order, are sessioned
and learned by actors holding the ranker (`imports.concurrency` of them), through the same `LabelSink` a local
import and /feedback take. The counts of every part add up to one report.

A local import reads its files as one stream in the order given; here the order of files does not matter, since
each caller's requests are sorted by time. Callers are learned side by side, so each call is predicted with the
counts that the sessions learned before it *on its actor* taught: the labels are the same, the predictions
recorded with them may differ from a sequential import's.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.learning.imports import ImportReport, ImportTally, RequestSieve, SessionLearner, learn_sessions
from pipeline.settings import ImportSettings, Settings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.matching import CallMatcher
from pipeline.traffic.formats import Format, Tally, detect, read_traffic
from pipeline.traffic.locations import expand
from pipeline.traffic.observed import Identity

if TYPE_CHECKING:
    from pipeline.ranking.model import RankerModel


def import_model(settings: Settings, model_dir: Path | None) -> RankerModel:
    """The ranker that predicts each step: the one in `model_dir`, else the service's champion."""
    from pipeline.adapters import registry
    from pipeline.errors import NoChampionError
    from pipeline.ranking.model import RankerModel

    if model_dir is not None:
        return RankerModel.load(model_dir)
    champion = registry.champion(settings.registry)
    if champion is None:
        raise NoChampionError(f"no @{settings.registry.alias} model in the registry to predict with: "
                              "register one first (opensesame bootstrap), or give --model")
    return registry.load_ranker(champion.uri, settings.registry)


def _read_file(
    row: dict[str, Any], catalogue: Catalogue, settings: ImportSettings, secret: bytes, host: str | None,
    prefix: str | None, fmt: Format | None,
) -> Iterator[dict[str, Any]]:
    """One file's matched requests, one row each (keyed by caller), then one row with what the file counted."""
    location = row["location"]
    found = fmt or detect(location)
    unreadable, tally = Tally(), ImportTally()
    sieve = RequestSieve(CallMatcher(catalogue), settings, host, prefix)
    for request, _ in sieve.matched(read_traffic(location, Identity(secret), unreadable, found), tally):
        yield {"key": request.key, "time": request.time, "payload": pickle.dumps(request), "format": found}
    tally.unreadable.update(unreadable)
    yield {"key": "", "time": 0.0, "payload": pickle.dumps(tally), "format": found}


class _CallerLearner:
    """An actor that learns callers' requests: each group holds one caller's, from every file. Requests are matched
    again here: a match carries its operation, heavier to ship between nodes than to find again."""

    def __init__(self, catalogue: Catalogue, settings: Settings, model_dir: Path | None, learn: bool,
                 host: str | None, prefix: str | None) -> None:
        self._settings = settings
        self._learner: SessionLearner | None = None
        matcher = CallMatcher(catalogue)
        if learn:
            # Imported here, not with the module: the tasks that read files need neither torch nor LightGBM.
            from pipeline.adapters.minilm import embedder_of
            from pipeline.runtime import session_learner

            model = import_model(settings, model_dir)
            self._learner = session_learner(catalogue, settings, model,
                                            embedder=embedder_of(model.meta.embedder, settings.embedder))
            matcher = self._learner.spec.matcher
        self._sieve = RequestSieve(matcher, settings.imports, host, prefix)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        order = np.argsort(batch["time"], kind="stable")
        requests = [pickle.loads(batch["payload"][i]) for i in order]
        calls = [(request, match) for request in requests if (match := self._sieve.match(request)) is not None]
        tally = ImportTally()
        learn_sessions(calls, self._settings.imports, self._learner, tally)
        return {"tally": np.array([pickle.dumps(tally)], dtype=object)}


def import_over_ray(
    locations: Sequence[str | Path], catalogue: Catalogue, settings: Settings, secret: bytes, *,
    host: str | None = None, prefix: str | None = None, fmt: Format | None = None, model_dir: Path | None = None,
    learn: bool = True,
) -> ImportReport:
    """Import `locations` on the Ray cluster this process is connected to (`ray.init` first)."""
    import ray

    started = time.perf_counter()
    locations = expand(locations)
    files = ray.data.from_items([{"location": str(loc)} for loc in locations], override_num_blocks=len(locations))
    read = files.flat_map(_read_file, fn_kwargs={"catalogue": catalogue, "settings": settings.imports,
                                                 "secret": secret, "host": host, "prefix": prefix, "fmt": fmt})
    # Read once: the files' counts and the requests to learn both come from it.
    read = read.materialize()
    total, formats = ImportTally(), {}
    for row in read.filter(lambda r: r["key"] == "").iter_rows():
        total.add(pickle.loads(row["payload"]))
        formats[row["format"]] = None
    # One actor at first, more as groups wait: a pool that took every CPU up front would leave none for the
    # shuffle that feeds it.
    learned = read.filter(lambda r: r["key"] != "").groupby("key", num_partitions=len(locations)).map_groups(
        _CallerLearner, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=settings.imports.concurrency),
        fn_constructor_args=(catalogue, settings, model_dir, learn, host, prefix),
    )
    for row in learned.iter_rows():
        total.add(pickle.loads(row["tally"]))
    return total.report(catalogue.content_hash, ",".join(formats), time.perf_counter() - started)
