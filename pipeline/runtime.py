"""Building an in-process predictor from settings: the one place that loads the model and MiniLM."""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

from pipeline.adapters.feedback_log import FeedbackLog
from pipeline.adapters.kv import DiskBlobs, ResilientStore
from pipeline.adapters.minilm import MiniLMEmbedder, load_embedder
from pipeline.cache import SharedStore
from pipeline.errors import ImportInputError
from pipeline.learning.imports import ImportReport, Progress, SessionLearner, TrafficImport
from pipeline.learning.labels import LabelSink
from pipeline.learning.online_counts import online_transitions
from pipeline.learning.online_patterns import online_patterns
from pipeline.ranking.embedding import CachedEmbedder, OperationEmbeddings, require_embedder
from pipeline.ranking.model import RankerModel
from pipeline.ranking.predict import Predictor
from pipeline.ranking.stats import InMemoryTransitions, PatternCounts, TransitionCounts
from pipeline.settings import Settings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.load import load_catalogue
from pipeline.spec.store import SpecStore
from pipeline.traffic.formats import Format, Location, Tally, detect, read_traffic
from pipeline.traffic.locations import expand
from pipeline.traffic.observed import Identity


def build_predictor(
    settings: Settings,
    model: RankerModel | None = None,
    model_dir: Path | None = None,
    counts: TransitionCounts | None = None,
    embedder: MiniLMEmbedder | None = None,
    patterns: PatternCounts | None = None,
) -> Predictor:
    model = model or RankerModel.load(model_dir or settings.paths.model_dir)
    embedder = embedder or load_embedder(settings.embedder)
    require_embedder(model.meta.embedder, embedder.name)
    return Predictor(
        model=model,
        counts=counts or InMemoryTransitions(),
        settings=settings.ranking,
        embedder=CachedEmbedder(embedder),
        op_embeddings=OperationEmbeddings(embedder, DiskBlobs(settings.paths.embedding_cache)),
        patterns=patterns,
    )


def label_sink(store: SharedStore, settings: Settings, remember_s: int | None = None) -> LabelSink:
    """Where labels go, as every replica sends them: the log, the online transition and pattern counts;
    `remember_s` is how long a prediction's first label is known (default: as long as the prediction)."""
    return LabelSink(store, FeedbackLog(store, settings.feedback), online_transitions(store, settings),
                     remember_s or settings.cache.prediction_ttl_s, online_patterns(store, settings))


def import_secret(settings: Settings) -> bytes:
    """The key of imported sessions' hashes: `imports.secret`, else a random one made once for this deployment and
    kept beside the uploads (storage every node sees, so imports on any node hash alike)."""
    if settings.imports.secret:
        return settings.imports.secret.encode()
    path = settings.imports.upload_dir / "secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole, then linked into place: an import starting at the same moment finds either no secret
        # or the complete one, and the first link wins.
        draft = path.with_name(f".secret-{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip().encode()


def spec_catalogue(spec: str | Path | Catalogue, store: SharedStore, settings: Settings) -> Catalogue:
    """A spec file or URL, else a spec_id the service registered (its catalogue in the shared store)."""
    if isinstance(spec, Catalogue):
        return spec
    if "://" in str(spec) or Path(spec).exists():
        return load_catalogue(spec, settings.fetch)
    return SpecStore(store, settings.cache, settings.fetch).catalogue(str(spec))


def session_learner(
    catalogue: Catalogue, settings: Settings, model: RankerModel | None = None, model_dir: Path | None = None,
    embedder: MiniLMEmbedder | None = None,
) -> SessionLearner:
    """What learns imported sessions into the store the service shares: Redis, which must be configured (an
    embedded service keeps its counts in its own memory)."""
    store = ResilientStore(settings.cache)
    if not store.configured:
        raise ImportInputError(
            "importing needs the service's Redis: set cache.redis_url (OPENSESAME__CACHE__REDIS_URL), or send "
            "the file to the running service: POST /admin/import"
        )
    # Each call is predicted as the service would answer it then: with the counts earlier sessions taught.
    predictor = build_predictor(settings, model, model_dir, online_transitions(store, settings), embedder,
                                online_patterns(store, settings))
    return SessionLearner(predictor, predictor.prepare(catalogue),
                          label_sink(store, settings, settings.imports.remember_s), settings.imports.history)


def import_traffic(
    files: Location | Sequence[Location], spec: str | Path | Catalogue, settings: Settings, *,
    host: str | None = None, prefix: str | None = None, fmt: Format | None = None, progress: Progress | None = None,
    model: RankerModel | None = None, model_dir: Path | None = None, embedder: MiniLMEmbedder | None = None,
    learn: bool = True,
) -> ImportReport:
    """Learn the traffic in `files` (HAR, OTLP JSON, JSON Lines or combined logs; paths or URIs, read one after
    another as one stream: rotated logs oldest first) on `spec` (a file, a URL, the spec_id of a spec registered
    with the service, or its catalogue). `learn=False`: a dry run, which reads, matches and reports, and stores
    nothing."""
    locations = expand([files] if isinstance(files, str | Path) else list(files))
    catalogue = spec_catalogue(spec, ResilientStore(settings.cache), settings)
    learner = session_learner(catalogue, settings, model, model_dir, embedder) if learn else None
    formats = [fmt or detect(location) for location in locations]
    tally = Tally()
    # A dry run stores no key: any secret tells people apart as well.
    identity = Identity(import_secret(settings) if learn else secrets.token_bytes(32))
    requests = chain.from_iterable(read_traffic(loc, identity, tally, f) for loc, f in zip(locations, formats, strict=True))
    return TrafficImport(catalogue, settings.imports, learner, host, prefix).run(
        requests, ",".join(dict.fromkeys(formats)), tally, progress)
