"""The HTTP contract: request and response bodies of the ingress, shown at /docs."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from pipeline.learning.acceptance import Acceptance
from pipeline.learning.imports import ImportReport
from pipeline.ranking.context import Event
from pipeline.ranking.request_values import JSONScalar, Source
from pipeline.spec.store import SpecInfo

VERSION = version("opensesame")  # the package's: the OpenAPI document and the MCP server report it
MAX_EVENTS = 200
MAX_PROMPT_CHARS = 4000
MAX_K = 50


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


def _exactly_one_of(*names: str) -> dict[str, Any]:
    """The JSON-schema form of "exactly one of these fields": the alternatives are not nullable, so sending a
    field at all is choosing it."""
    return {"oneOf": [{"required": [name]} for name in names]}


class SpecSource(_Request):
    """Exactly one way to name the spec."""

    model_config = ConfigDict(json_schema_extra=_exactly_one_of("spec_url", "spec", "spec_id"))

    # The alternatives default to None but do not accept null: `None` here means "not sent".
    spec_url: str = Field(None, min_length=1, max_length=2048,
                          description="http(s) URL of an OpenAPI 3.x / Swagger 2.0 spec, not empty")
    spec: dict[str, Any] | str = Field(None, description="the spec itself, as a JSON object or JSON/YAML text")
    spec_id: str = Field(None, min_length=1, max_length=64,
                         description="id returned by POST /specs or a previous /predict")

    @model_validator(mode="after")
    def _exactly_one_spec(self) -> SpecSource:
        given = [name for name in ("spec_url", "spec", "spec_id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of spec_url, spec or spec_id"
                + (f" (got {', '.join(given)})" if given else " (got none)")
            )
        return self


class PredictRequest(SpecSource):
    user_id: str = Field(..., min_length=1, max_length=256)
    events: list[Event] = Field(default_factory=list, max_length=MAX_EVENTS, description="recent calls, oldest first")
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="what the user wants, if known")
    k: int = Field(5, ge=1, le=MAX_K, strict=True, description="how many calls to answer: a JSON integer")
    latency_budget_ms: float | None = Field(None, gt=0, description="lets the service skip slow candidate sources")


class ErrorBody(BaseModel):
    """Every error of the API."""

    error: str = Field(..., description="the exception-style name of the error, e.g. 'RequestValidationError', "
                       "'SpecNotFoundError', 'OverloadedError'")
    detail: str = Field(..., description="what went wrong and what to fix")


class Prediction(BaseModel):
    endpoint: str = Field(..., description='"METHOD /template" of a real operation of the spec')
    method: str
    path: str = Field(..., description="the path with parameters carried over from the history")
    params: dict[str, str] = Field(..., description="the path parameters' values (those `path` holds)")
    score: float = Field(..., description="calibrated probability that this is the next call, monotone in rank")
    reason: str
    sources: list[str]
    query: dict[str, JSONScalar] = Field(
        default_factory=dict, description="query parameters filled, typed by the spec's schema")
    body: dict[str, JSONScalar] = Field(
        default_factory=dict, description="top-level request body fields filled (JSON or form), typed by the schema")
    filled_from: dict[str, Source] = Field(
        default_factory=dict, description="where each query and body value came from: the prompt, an OpenAPI link "
        "of an earlier call, the history's calls and responses, or the spec's default for a required field")
    missing: list[str] = Field(default_factory=list, description="required path, query and body fields nothing "
                               "filled: what a console asks the user for")


class SpecList(RootModel[list[SpecInfo]]):
    """`GET /specs`: the specs a caller registered lately, by title."""


class SpecSummary(BaseModel):
    id: str
    title: str
    operations: int


class LLMUse(BaseModel):
    used: bool = Field(..., description="whether the LLM's candidates took part in this ranking")
    why: str = Field(..., description="the router's decision, or what went wrong")
    latency_ms: float | None = None
    patched: int = Field(0, description="named operations mapped onto a real one")
    dropped: int = Field(0, description="named operations that are not in the spec")


class PredictResponse(BaseModel):
    prediction_id: str
    predictions: list[Prediction]
    model_version: str
    spec: SpecSummary
    unmatched_events: list[str] = Field(..., description="history calls that match no operation of the spec")
    timing: dict[str, float] = Field(..., description="milliseconds: total and per stage")
    llm: LLMUse


class FeedbackRequest(_Request):
    """Exactly one outcome: `called`, `accepted_rank` or `none: true`."""

    # `none: false` is the same as leaving it out, so the third alternative is "none is true and nothing else".
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["called"], "not": {"required": ["none"], "properties": {"none": {"const": True}}}},
                {"required": ["accepted_rank"], "not": {"required": ["none"], "properties": {"none": {"const": True}}}},
                {
                    "required": ["none"],
                    "properties": {"none": {"const": True}},
                    "not": {"anyOf": [{"required": ["called"]}, {"required": ["accepted_rank"]}]},
                },
            ]
        }
    )

    prediction_id: str = Field(..., min_length=1, max_length=64)
    called: str = Field(None, min_length=3, max_length=2048, description='the next call, "METHOD /path"')
    accepted_rank: int = Field(None, ge=1, le=MAX_K, description="1-based rank of the accepted prediction")
    none: bool = Field(False, description="the user made none of the predicted calls and no other call")

    @model_validator(mode="after")
    def _exactly_one_outcome(self) -> FeedbackRequest:
        given = sum([self.called is not None, self.accepted_rank is not None, self.none])
        if given != 1:
            raise ValueError("give exactly one of called, accepted_rank or none=true")
        return self


class FeedbackResponse(BaseModel):
    prediction_id: str
    outcome: str
    endpoint: str | None
    rank: int | None
    stored: str = Field(..., description="'stream' (Redis Stream entry), 'spool' (local file, replayed later) or "
                        "'duplicate' (the prediction already had a label: the first one counts)")
    entry_id: str | None


class Ready(BaseModel):
    ready: bool
    model_version: str | None
    model_reload_error: str | None = Field(None, description="why the Ranker could not check or load the model "
                                           "its alias names (e.g. the registry is unreachable); it keeps serving "
                                           "model_version. None when the last check succeeded")
    redis: str = Field(..., description="'up', 'down' or 'off' (embedded mode: no Redis configured)")
    feedback_spooled: int


class ModelState(BaseModel):
    """What one Ranker replica serves."""

    champion: str | None = Field(..., description="the model version answering requests (None: none loaded)")
    shadow: str | None = Field(None, description="the model version ranking in shadow (None: no shadow)")
    shadow_share: float = Field(0.0, description="share of predictions the shadow also ranks")
    reload_error: str | None = None


class ModelsReport(BaseModel):
    champion: str | None
    shadow: str | None
    shadow_share: float
    online: dict[str, Acceptance] = Field(
        ..., description="per model version, over every label of its predictions (its own or shadowed)"
    )
    paired: dict[str, Acceptance] | None = Field(
        None, description="'champion' and 'shadow' on exactly the predictions both ranked (None: no shadow)"
    )


class GateDecision(BaseModel):
    promoted: bool
    promoted_at: float | None = Field(None, description="unix time the alias moved to the candidate")
    reason: str
    candidate: dict[str, float] = Field(..., description="the candidate's metrics (holdout.*, dev.*)")
    champion: dict[str, float] = Field(..., description="the champion's metrics on the same cases")


class RetrainJob(BaseModel):
    job_id: str
    status: str = Field(..., description="Ray job status: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED")
    trigger: str | None = Field(None, description="'admin' or 'labels' (automatic after learning.retrain_after_labels)")
    message: str | None = None
    model_version: str | None = Field(None, description="the registered candidate, once the job has registered it")
    gate: GateDecision | None = None
    started_at: float | None = None
    ended_at: float | None = None


class ImportJob(BaseModel):
    job_id: str
    status: str = Field(..., description="Ray job status: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED")
    message: str | None = None
    report: ImportReport | None = Field(None, description="what the import read and learned, once it ended")
