"""Domain errors. Each says what went wrong and what the caller can do about it.

The HTTP layer maps these to status codes in one place (`serve/errors.py`); nothing here knows HTTP.
"""

from __future__ import annotations


def yaml_problem(exc: Exception) -> tuple[str, int | None]:
    """What a PyYAML error says is wrong, and its 1-based line (`problem_mark`), as the person fixing the file
    reads them: a spec or a config file."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return str(problem), mark.line + 1 if mark is not None else None


class OpenSesameError(Exception):
    """Base of every error OpenSesame raises on purpose."""


class SpecError(OpenSesameError):
    """The spec could not be turned into an operation catalogue."""


class SpecSyntaxError(SpecError):
    """The document is neither valid JSON nor (tolerantly) valid YAML."""

    def __init__(self, message: str, line: int | None = None) -> None:
        where = f" at line {line}" if line is not None else ""
        super().__init__(f"invalid YAML/JSON{where}: {message}. Fix the document or send it as JSON.")
        self.line = line


class NotASpecError(SpecError):
    """The document parses but is not an OpenAPI 3.x or Swagger 2.0 description."""


class MissingPathsError(SpecError):
    """An OpenAPI document without any operation under `paths`."""


class SpecTooLargeError(SpecError):
    """The document exceeds the configured size cap."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"spec is larger than the {limit} byte limit (got at least {size} bytes); "
            "send a smaller spec or raise fetch.max_bytes"
        )
        self.size = size
        self.limit = limit


class FetchError(SpecError):
    """A spec URL could not be fetched."""


class UnsupportedSchemeError(FetchError):
    """Only http and https URLs are fetched."""


class RefusedAddressError(FetchError):
    """The URL (or a redirect, or one of the addresses its name resolves to) is not a public address."""


class UnreachableError(FetchError):
    """DNS failure, connection failure, time-out or a non-2xx answer."""


class SpecNotFoundError(SpecError):
    """A local path or a registered spec id that does not exist."""


class SharedStoreDownError(OpenSesameError):
    """A lookup missed while the shared store (Redis) is, or just was, unreachable: what was asked for may well
    exist, so the client is told to retry rather than that it does not exist."""


class TrainingDataError(OpenSesameError):
    """No usable training specs where the settings point."""


class RetrainRunningError(OpenSesameError):
    """A retraining job is already running: one at a time."""


class JobNotFoundError(OpenSesameError):
    """No retraining job with that id."""


class JobsUnavailableError(OpenSesameError):
    """The Ray job API (the head's dashboard) cannot be reached: jobs can be neither started nor read."""


class NoChampionError(OpenSesameError):
    """Retraining and imports need a champion model (its patterns and the gate; the predictions of imported calls)."""


class RetrainConfigError(OpenSesameError):
    """Learning settings that cannot work on this cluster."""


class RateLimitedError(OpenSesameError):
    """A client over its quota: requests per second, or distinct specs registered per window."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ImportInputError(OpenSesameError):
    """Traffic to import that cannot be: an empty upload, a store to learn into that is not configured."""


class ConfigError(OpenSesameError):
    """The settings (config file, secret files, environment) do not validate: each bad field and what it takes."""
