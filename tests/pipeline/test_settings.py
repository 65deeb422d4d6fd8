"""The one settings model: YAML, a Serve config's overrides, secret files and the environment, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from tests.support import FIXTURES


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "opensesame.yaml"
    path.write_text(yaml.safe_dump({"fetch": {"max_bytes": 1000}, "cache": {"key_prefix": "yaml:"}}))
    return path


def test_each_source_wins_over_the_ones_before(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "opensesame__learning__admin_token").write_text("from-a-file")
    monkeypatch.setenv("OPENSESAME_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("OPENSESAME__CACHE__REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("OPENSESAME__FETCH__ALLOW_ADDRESSES", '["127.0.0.1/32"]')
    settings = load_settings(config, overrides={"cache": {"key_prefix": "override:"}, "fetch": {"max_redirects": 2}})
    assert settings.fetch.max_bytes == 1000  # YAML
    assert (settings.cache.key_prefix, settings.fetch.max_redirects) == ("override:", 2)  # overrides over YAML
    assert settings.fetch.read_timeout_s == 10.0  # a section merged field by field, defaults kept
    assert settings.learning.admin_token == "from-a-file"  # secret file
    assert settings.cache.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.fetch.allow_addresses == ["127.0.0.1/32"]
    monkeypatch.setenv("OPENSESAME__LEARNING__ADMIN_TOKEN", "from-the-env")
    monkeypatch.setenv("OPENSESAME__CACHE__KEY_PREFIX", "env:")
    settings = load_settings(config, overrides={"cache": {"key_prefix": "override:"}})
    assert (settings.learning.admin_token, settings.cache.key_prefix) == ("from-the-env", "env:")


def test_a_job_reads_the_same_settings_from_its_environment(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = load_settings(config, overrides={
        "cache": {"redis_url": "redis://redis:6379/0"},
        "learning": {"admin_token": "secret", "feedback_weight": 3.0},
        "llm": {"kv_cache_bytes": None},
        "training": {"fit": {"rounds": 7}},
    })
    env = service.to_env()
    assert "OPENSESAME__LEARNING__ADMIN_TOKEN" not in env  # the service's secret stays with the service
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    job = load_settings(Path("/nonexistent.yaml"))
    secret = {"learning": {"admin_token"}}
    assert job.model_dump(exclude=secret) == service.model_dump(exclude=secret)
    assert job.training.fit.num_leaves == 31  # a nested section partly set keeps its defaults


def test_invalid_values_name_the_field(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSESAME__FETCH__MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match=r"fetch\.max_bytes: Input should be a valid integer.*\(got 'lots'\)"):
        load_settings(config)
    monkeypatch.delenv("OPENSESAME__FETCH__MAX_BYTES")
    with pytest.raises(ConfigError, match=r"cache\.redis: Extra inputs are not permitted"):
        load_settings(config, overrides={"cache": {"redis": "typo"}})


@pytest.mark.parametrize(
    ("text", "message"),
    [("ranking: [1\n", "not valid YAML at line 2: expected ',' or ']'"),
     ("- ranking\n", "a config file is a mapping of sections")],
)
def test_a_config_file_that_is_not_a_mapping_says_so(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "opensesame.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{path}: {message}"):
        load_settings(path)


def test_the_cli_helps_with_a_broken_config_and_names_what_is_wrong_when_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ops.cli import main
    from pipeline.settings import get_settings

    path = tmp_path / "opensesame.yaml"
    path.write_text(yaml.safe_dump({"ranking": {"per_source": -5}}))
    monkeypatch.setenv("OPENSESAME_CONFIG", str(path))
    get_settings.cache_clear()
    try:
        for argv in (["--help"], ["demo", "learning", "--help"]):
            with pytest.raises(SystemExit) as done:
                main(argv)
            assert done.value.code == 0 and "usage: opensesame" in capsys.readouterr().out
        assert main(["spec", "inspect", str(FIXTURES / "billing_oas30.yaml")]) == 2
        assert f"error: {path}" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
