"""Ranker models in the MLflow model registry, and loading a model from a URI or a directory.

A registered version is a pyfunc model whose artifact `ranker/` is the model directory (`model.txt`,
`meta.json`), so MLflow tooling can load and score it too. The Serve `Ranker` names its model by URI:
`models:/opensesame-ranker@champion`, `models:/opensesame-ranker/3`, or a local directory.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import OpenSesameError
from pipeline.ranking.model import ModelNotFoundError, RankerModel
from pipeline.settings import RegistrySettings

ARTIFACT = "ranker"
SCHEMA_TAG = "feature_schema"
EMBEDDER_TAG = "embedder"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in service logs


class RegistryError(OpenSesameError):
    """The registry cannot resolve a model URI (unknown name, version or alias)."""


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def label(self) -> str:
        """What responses name as `model_version`."""
        return f"{self.name}/v{self.version}"


def report_metrics(report: dict[str, Any]) -> dict[str, float]:
    """A training report's validation and dev-set metrics as MLflow metric names (`valid_hit_at_3`)."""
    return {
        f"{split}_{name.replace('@', '_at_')}": float(value)
        for split in ("valid", "dev")
        for name, value in report.get(split, {}).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def _client(settings: RegistrySettings) -> Any:
    import mlflow
    from mlflow import MlflowClient

    if settings.tracking_uri.startswith("sqlite:///"):
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # MLflow reads these at every request; this process talks to one registry.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.http_timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.http_max_retries)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _pyfunc_class() -> type:
    import mlflow.pyfunc
    import pandas as pd

    class RankerPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[misc, name-defined]
        """Scores a feature frame (columns = FEATURE_NAMES) with the raw lambdarank score."""

        def load_context(self, context: Any) -> None:
            self.model = RankerModel.load(Path(context.artifacts[ARTIFACT]))

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
            return self.model.raw_scores(model_input.to_numpy(dtype="float64"))

    return RankerPyfunc


def register(
    model_dir: Path,
    settings: RegistrySettings,
    metrics: dict[str, float] | None = None,
    params: dict[str, Any] | None = None,
    alias: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> RegisteredVersion:
    """Log the model directory as a run with its metrics, register a new version, optionally point `alias` at it.
    `tags` go on the run and on the version (a retraining job's id and its gate decision)."""
    import mlflow

    model = RankerModel.load(model_dir)  # refuse to register something the Ranker could not load
    # The schema and embedder tags let a newer release or another embedder see, without downloading the model,
    # that it cannot serve it.
    tags = {SCHEMA_TAG: model.meta.schema_version, EMBEDDER_TAG: model.meta.embedder, **(tags or {})}
    client = _client(settings)
    experiment = client.get_experiment_by_name(settings.model_name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(settings.model_name, artifact_location=settings.artifact_root)
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_metrics(metrics or {})
        mlflow.log_params(params or {})
        mlflow.set_tags(tags)
        info = mlflow.pyfunc.log_model(
            name=ARTIFACT,
            python_model=_pyfunc_class()(),
            artifacts={ARTIFACT: str(model_dir)},
            registered_model_name=settings.model_name,
            pip_requirements=["lightgbm", "numpy", "pandas"],  # skips MLflow's slow dependency inference
        )
    version = RegisteredVersion(settings.model_name, str(info.registered_model_version))
    tag_version(version, {"run_id": run.info.run_id, **tags}, settings)
    if alias:
        promote(version, alias, settings)
    return version


def promote(version: RegisteredVersion, alias: str, settings: RegistrySettings) -> None:
    _client(settings).set_registered_model_alias(version.name, alias, version.version)


def tag_version(version: RegisteredVersion, tags: dict[str, str], settings: RegistrySettings) -> None:
    client = _client(settings)
    for key, value in tags.items():
        client.set_model_version_tag(version.name, version.version, key, value)


def versions_tagged(key: str, value: str, settings: RegistrySettings) -> list[tuple[RegisteredVersion, dict[str, str]]]:
    """Registered versions with tag `key` = `value` (e.g. the one a retraining job produced), with all their tags."""
    client = _client(settings)
    found = client.search_model_versions(f"name = '{settings.model_name}' and tags.{key} = '{value}'")
    return [(RegisteredVersion(v.name, str(v.version)), dict(v.tags)) for v in found]


def resolve(uri: str, settings: RegistrySettings) -> RegisteredVersion:
    """`models:/NAME@ALIAS` or `models:/NAME/VERSION` -> the concrete version."""
    from mlflow.exceptions import MlflowException

    name, _, ref = uri.removeprefix("models:/").partition("@")
    client = _client(settings)
    try:
        if ref:
            return RegisteredVersion(name, str(client.get_model_version_by_alias(name, ref).version))
        name, _, number = name.rpartition("/")
        return RegisteredVersion(name, str(client.get_model_version(name, number).version))
    except MlflowException as exc:
        raise RegistryError(
            f"cannot resolve {uri!r} in the registry at {settings.tracking_uri}: {exc.message}"
        ) from exc


def champion(settings: RegistrySettings) -> RegisteredVersion | None:
    """The version the configured alias points at, or None when there is none yet."""
    try:
        return resolve(f"models:/{settings.model_name}@{settings.alias}", settings)
    except RegistryError:
        return None


def version_tags(version: RegisteredVersion, settings: RegistrySettings) -> dict[str, str]:
    return dict(_client(settings).get_model_version(version.name, version.version).tags)


def load_ranker(uri: str, settings: RegistrySettings) -> RankerModel:
    """Load from a registry URI (the response's model_version is then `NAME/vN`) or from a model directory."""
    if not uri.startswith("models:/"):
        return RankerModel.load(Path(uri))
    import mlflow.artifacts

    version = resolve(uri, settings)
    with tempfile.TemporaryDirectory(prefix="opensesame-ranker-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.uri, dst_path=tmp))
        candidates = list(local.rglob("meta.json"))
        if not candidates:
            raise ModelNotFoundError(f"{version.uri} holds no ranker model (no meta.json in its artifacts)")
        model = RankerModel.load(candidates[0].parent)  # reads both files into memory
    return model.relabel(version.label)
