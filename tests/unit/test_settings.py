"""Settings resolve once: LOOPML_* environment > workspace config file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.errors import ConfigError
from loopml.settings import read_config_file, resolve_settings, write_config_file


def _make_ws(root: Path, config: dict[str, str] | None = None) -> Path:
    (root / ".loopml").mkdir(parents=True)
    if config is not None:
        write_config_file(root / ".loopml" / "config.toml", config)
    return root


def test_defaults_live_inside_the_workspace(tmp_path: Path) -> None:
    s = resolve_settings(_make_ws(tmp_path), env={})
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / '.loopml' / 'loopml.db'}"
    assert s.artifacts == str(tmp_path.resolve() / ".loopml" / "objects")
    assert s.sources["db_url"] == "default"


def test_config_file_beats_defaults_and_env_beats_config(tmp_path: Path) -> None:
    root = _make_ws(tmp_path, {"artifacts": "elsewhere", "db_url": "sqlite:///other.db"})
    s = resolve_settings(root, env={})
    assert s.artifacts == str(tmp_path.resolve() / "elsewhere")
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'other.db'}"
    assert s.sources["artifacts"] == "config"
    s = resolve_settings(root, env={"LOOPML_ARTIFACTS": "s3://bucket/prefix",
                                    "LOOPML_S3_ENDPOINT_URL": "http://127.0.0.1:9000"})
    assert s.artifacts == "s3://bucket/prefix"
    assert s.sources["artifacts"] == "env LOOPML_ARTIFACTS"
    assert s.storage_options == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}


def test_config_round_trips_quotes_and_backslashes(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    write_config_file(path, {"artifacts": 'we"ird\\path'})
    assert read_config_file(path) == {"artifacts": 'we"ird\\path'}


def test_malformed_config_names_the_file(tmp_path: Path) -> None:
    root = _make_ws(tmp_path)
    (root / ".loopml" / "config.toml").write_text("db_url = [unclosed\n")
    with pytest.raises(ConfigError, match=r"config\.toml.*not valid TOML"):
        resolve_settings(root, env={})


def test_unknown_setting_is_rejected_with_the_known_ones(tmp_path: Path) -> None:
    root = _make_ws(tmp_path, {"db_ulr": "sqlite:///x.db"})
    with pytest.raises(ConfigError, match="'db_ulr'.*Known settings: actor, artifacts"):
        resolve_settings(root, env={})


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", "postgres//missing-colon"])
def test_unsupported_database_url_is_named(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="is not supported"):
        resolve_settings(_make_ws(tmp_path), env={"LOOPML_DB_URL": url})


def test_actor_is_named_even_without_user_in_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os
    import pwd

    from loopml.settings import default_actor

    for var in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)
    assert default_actor({}) == pwd.getpwuid(os.getuid()).pw_name
    assert default_actor({"USER": "ana"}) == "ana"
