"""OpenSesame's own metrics, through `ray.serve.metrics`: every node's Ray metrics export port serves them in
Prometheus text format, beside Ray's and Serve's.

Ray exports a metric named `opensesame_x` as `ray_opensesame_x`; a counter also gets `_total`, a histogram
`_bucket`/`_sum`/`_count`. Serve adds the tags `deployment`, `replica` and `application`. `EXPORTED` lists the
names as scraped: docs/architecture.md, the Grafana dashboard and the alert rules use exactly these (a test
checks the last two).

Each metric is created once per replica process, by the deployment that observes it.
"""

from __future__ import annotations

from ray.serve import metrics

# Milliseconds: resolves 5-500 ms (the SLO region) finely, and still separates a slow second from a hung request.
LATENCY_BUCKETS_MS = [1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2500, 5000]

# A response's `timing` key -> the `stage` tag of its latency (total: the whole /predict inside the Ingress).
STAGE_OF_TIMING = {"spec": "spec", "embed_prompt": "embed", "ranker.prepare_spec": "prepare_spec",
                   "ranker.candidates_features": "features", "ranker.rank": "model", "llm": "llm", "total": "total"}


class PredictMetrics:
    """Observed by the Ingress for every answered `/predict`, and for every label."""

    def __init__(self) -> None:
        self.latency = metrics.Histogram(
            "opensesame_stage_latency_ms",
            description="time of each stage of a prediction (total: the whole /predict inside the Ingress)",
            boundaries=LATENCY_BUCKETS_MS,
            tag_keys=("stage",),
        )
        self.predictions = metrics.Counter(
            "opensesame_predictions",
            description="predictions by model version, cold (spec prepared for it) or warm, and covered "
            "(at least one prediction) or not",
            tag_keys=("model_version", "spec_state", "covered"),
        )
        self.unmatched = metrics.Counter(
            "opensesame_unmatched_events",
            description="history events that matched no operation of their spec",
        )
        self.labels = metrics.Counter(
            "opensesame_labels",
            description="labels by the rank the labelled model gave the called operation (1, 2-3, 4+, missed, "
            "none), per model version; role 'shadow' for a shadow model's ranking of the same prediction",
            tag_keys=("model_version", "role", "rank", "source"),
        )
        self.feedback = metrics.Counter(
            "opensesame_feedback",
            description="labels by source (explicit: /feedback; implicit: the user's next /predict) and where they "
            "were stored: stream, spool (Redis away), duplicate (the prediction already had its label)",
            tag_keys=("source", "stored"),
        )
        self.spooled = metrics.Gauge(
            "opensesame_feedback_spooled", description="labels waiting in this node's spool for Redis"
        )
        self.redis_up = metrics.Gauge(
            "opensesame_redis_up", description="1 when Redis answers, 0 when it does not (absent: no Redis configured)"
        )

    def timing(self, timing: dict[str, float]) -> None:
        """The response's `timing` (ms by key), under the stage names of `STAGE_OF_TIMING`."""
        for key, stage in STAGE_OF_TIMING.items():
            if key in timing:
                self.latency.observe(timing[key], tags={"stage": stage})


class RankerMetrics:
    """Observed by the Ranker: the LLM step and the model it serves."""

    def __init__(self) -> None:
        self.llm_requests = metrics.Counter(
            "opensesame_llm_requests",
            description="requests by what became of the LLM: used, skipped, failed",
            tag_keys=("outcome",),
        )
        self.llm_operations = metrics.Counter(
            "opensesame_llm_operations",
            description="operations named by the LLM, by auto-patch outcome",
            tag_keys=("outcome",),
        )
        self.model_loaded = metrics.Gauge(
            "opensesame_model_loaded",
            description="1 for the model version this replica serves in each role (champion, shadow)",
            tag_keys=("model_version", "role"),
        )
        self.reloads = metrics.Counter(
            "opensesame_model_reloads",
            description="model loads by outcome (loaded, failed): failures keep the previous model serving",
            tag_keys=("outcome",),
        )
        self.shadow_scored = metrics.Counter(
            "opensesame_shadow_scored", description="predictions also ranked by the shadow model, off the response path"
        )


class SpecMetrics:
    """Observed by the SpecStore deployment."""

    def __init__(self) -> None:
        self.lookups = metrics.Counter(
            "opensesame_spec_lookups",
            description="spec lookups: hit (parsed in this replica), shared (from Redis), miss (fetched and parsed), "
            "inline (parsed from a request body), revalidated (304 from the spec's server), stale (served after a "
            "failed revalidation)",
            tag_keys=("outcome",),
        )


class LearningMetrics:
    """Observed by the LearningLoop: the label log writer and the retraining jobs."""

    def __init__(self) -> None:
        self.backlog = metrics.Gauge(
            "opensesame_label_log_backlog", description="labels in the stream not yet written to the label log"
        )
        self.lag = metrics.Gauge(
            "opensesame_label_log_lag_seconds", description="age of the oldest label not yet written to the log"
        )
        self.written = metrics.Counter("opensesame_label_log_written", description="labels written to the label log")
        self.jobs = metrics.Counter(
            "opensesame_retrain_jobs",
            description="retraining jobs by trigger (labels, admin) and status (submitted, succeeded, failed)",
            tag_keys=("trigger", "status"),
        )
        self.gate = metrics.Counter(
            "opensesame_gate_decisions", description="the gate's decisions on candidates", tag_keys=("decision",)
        )


def exported(name: str, kind: str) -> list[str]:
    """The series names Prometheus scrapes for a metric of ours."""
    base = f"ray_{name}"
    return {
        "counter": [f"{base}_total"],
        "gauge": [base],
        "histogram": [f"{base}_bucket", f"{base}_sum", f"{base}_count"],
    }[kind]


EXPORTED: dict[str, str] = {
    "opensesame_stage_latency_ms": "histogram",
    "opensesame_predictions": "counter",
    "opensesame_unmatched_events": "counter",
    "opensesame_labels": "counter",
    "opensesame_feedback": "counter",
    "opensesame_feedback_spooled": "gauge",
    "opensesame_redis_up": "gauge",
    "opensesame_llm_requests": "counter",
    "opensesame_llm_operations": "counter",
    "opensesame_model_loaded": "gauge",
    "opensesame_model_reloads": "counter",
    "opensesame_shadow_scored": "counter",
    "opensesame_spec_lookups": "counter",
    "opensesame_label_log_backlog": "gauge",
    "opensesame_label_log_lag_seconds": "gauge",
    "opensesame_label_log_written": "counter",
    "opensesame_retrain_jobs": "counter",
    "opensesame_gate_decisions": "counter",
}
