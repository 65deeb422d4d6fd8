"""The one settings schema, read by pydantic-settings: the YAML file, then a Serve config's overrides, then
secret files, then the environment (each wins over the ones before it).

- `configs/opensesame.yaml`, or the file `OPENSESAME_CONFIG` names;
- `overrides`: a Serve config's `args.settings`, section by section (validated once, when the app is built);
- secret files (Kubernetes): `$OPENSESAME_SECRETS_DIR` (default /run/secrets/opensesame) holding files named like
  the variables below, e.g. `opensesame__learning__admin_token`;
- environment variables `OPENSESAME__<SECTION>__<FIELD>` (double underscores), e.g.
  `OPENSESAME__FETCH__MAX_BYTES=1000000`. Lists and nested sections are JSON
  (`OPENSESAME__FETCH__ALLOW_ADDRESSES='["127.0.0.1/32"]'`); `null` is None.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources import NestedSecretsSettingsSource

from pipeline.errors import ConfigError, yaml_problem
from pipeline.settings.section import PROJECT_ROOT
from pipeline.settings.serving import (
    ApiKey,
    CacheSettings,
    ClientSettings,
    EmbedderSettings,
    FeedbackSettings,
    FetchSettings,
    ImportSettings,
    LearningSettings,
    LLMSettings,
    PathSettings,
    RankingSettings,
    RecallSettings,
    RegistrySettings,
)
from pipeline.settings.training import (
    ColdStartSettings,
    FitSettings,
    SessionShapes,
    TrainingSettings,
)

DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "opensesame.yaml"
DEFAULT_SECRETS_DIR = "/run/secrets/opensesame"
ENV_PREFIX = "OPENSESAME__"
__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SECRETS_DIR",
    "ENV_PREFIX",
    "PROJECT_ROOT",
    "ApiKey",
    "CacheSettings",
    "ClientSettings",
    "ColdStartSettings",
    "EmbedderSettings",
    "FeedbackSettings",
    "FetchSettings",
    "FitSettings",
    "ImportSettings",
    "LLMSettings",
    "LearningSettings",
    "PathSettings",
    "RankingSettings",
    "RecallSettings",
    "RegistrySettings",
    "SessionShapes",
    "Settings",
    "TrainingSettings",
    "get_settings",
    "load_settings",
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", env_parse_none_str="null", extra="forbid"
    )

    fetch: FetchSettings = FetchSettings()
    ranking: RankingSettings = RankingSettings()
    training: TrainingSettings = TrainingSettings()
    paths: PathSettings = PathSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    cache: CacheSettings = CacheSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    registry: RegistrySettings = RegistrySettings()
    llm: LLMSettings = LLMSettings()
    learning: LearningSettings = LearningSettings()
    clients: ClientSettings = ClientSettings()
    imports: ImportSettings = ImportSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        secrets = NestedSecretsSettingsSource(
            file_secret_settings,
            secrets_dir=os.environ.get("OPENSESAME_SECRETS_DIR", DEFAULT_SECRETS_DIR),
            secrets_dir_missing="ok",  # no secrets mounted: the embedded local setup
            secrets_nested_delimiter="__",
        )
        return env_settings, secrets, init_settings  # first wins: environment, secret files, YAML + overrides

    def to_env(self) -> dict[str, str]:
        """The variables that make another process (a retraining job) read these settings: every field that
        differs from its default, e.g. {"OPENSESAME__CACHE__REDIS_URL": "redis://..."}."""
        env = {}
        # The admin token and the clients' keys are the service's, not the job's: job variables are visible in
        # Ray's job list.
        changed = self.model_dump(mode="json", exclude_defaults=True, exclude=_SERVICE_SECRETS)
        for section, fields in changed.items():
            for field, value in fields.items():
                text = value if isinstance(value, str) else "null" if value is None else json.dumps(value)
                env[f"{ENV_PREFIX}{section.upper()}__{field.upper()}"] = text
        return env


_SERVICE_SECRETS: dict[str, Any] = {"learning": {"admin_token"}, "clients": True, "imports": {"secret"}}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if nested else value
    return merged


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """The YAML file (default `OPENSESAME_CONFIG` or configs/opensesame.yaml) with `overrides` merged in, then
    secret files and the environment."""
    path = path or Path(os.environ.get("OPENSESAME_CONFIG", DEFAULT_CONFIG))
    try:
        data: dict[str, Any] = yaml.safe_load(path.read_text()) or {} if path.exists() else {}
    except yaml.YAMLError as exc:
        problem, line = yaml_problem(exc)
        where = f" at line {line}" if line is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file is a mapping of sections (ranking:, cache:, ...)")
    try:
        return Settings(**_merge(data, overrides or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})" for e in exc.errors())
        raise ConfigError(f"{path} (with the environment's OPENSESAME__* and secret files): {problems}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()
