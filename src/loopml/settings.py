"""Settings, resolved once at the edge: LOOPML_* environment > workspace config > defaults."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from loopml.errors import ConfigError

WORKSPACE_DIRNAME = ".loopml"
CONFIG_FILENAME = "config.toml"
DEFAULT_DB_FILENAME = "loopml.db"
DEFAULT_OBJECTS_DIRNAME = "objects"

# setting name -> environment variable; the config file uses the setting name as key.
ENV_VARS: dict[str, str] = {
    "db_url": "LOOPML_DB_URL",
    "artifacts": "LOOPML_ARTIFACTS",
    "s3_endpoint_url": "LOOPML_S3_ENDPOINT_URL",
    "tracking_uri": "LOOPML_TRACKING_URI",
    "actor": "LOOPML_ACTOR",
}


@dataclass(frozen=True)
class Settings:
    """Where a workspace keeps its metadata and artifacts, and who acts in it."""

    root: Path
    db_url: str
    artifacts: str
    s3_endpoint_url: str | None = None
    tracking_uri: str | None = None
    actor: str = field(default_factory=lambda: default_actor(os.environ))
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def workspace_dir(self) -> Path:
        return self.root / WORKSPACE_DIRNAME

    @property
    def config_path(self) -> Path:
        return self.workspace_dir / CONFIG_FILENAME

    @property
    def artifacts_is_local(self) -> bool:
        return "://" not in self.artifacts or self.artifacts.startswith("file://")

    @property
    def storage_options(self) -> dict[str, object]:
        """fsspec options for a remote artifact URL (endpoint for S3-compatible servers)."""
        if self.s3_endpoint_url and self.artifacts.startswith(("s3://", "s3a://")):
            return {"client_kwargs": {"endpoint_url": self.s3_endpoint_url}}
        return {}

    def with_overrides(self, **values: str | None) -> Settings:
        changes: dict[str, str] = {k: v for k, v in values.items() if v is not None}
        return replace(self, **changes)  # type: ignore[arg-type]


def default_values(root: Path) -> dict[str, str]:
    ws = root / WORKSPACE_DIRNAME
    return {
        "db_url": f"sqlite:///{ws / DEFAULT_DB_FILENAME}",
        "artifacts": str(ws / DEFAULT_OBJECTS_DIRNAME),
    }


def read_config_file(path: Path) -> dict[str, str]:
    """Read a workspace config file; raise ConfigError naming the file if it is malformed."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"The workspace config file {str(path)!r} is not valid TOML: {exc}.",
            hint="Fix or delete the file (loopml init recreates a default one).",
        ) from exc
    except OSError as exc:
        raise ConfigError(f"Cannot read the workspace config file {str(path)!r}: {exc.strerror}.") from exc
    section = data.get("loopml", data)
    unknown = sorted(set(section) - set(ENV_VARS))
    if unknown:
        raise ConfigError(
            f"Unknown setting {unknown[0]!r} in {str(path)!r}.",
            hint=f"Known settings: {', '.join(sorted(ENV_VARS))}.",
        )
    return {k: str(v) for k, v in section.items()}


def write_config_file(path: Path, values: Mapping[str, str]) -> None:
    lines = ["# loopml workspace settings; LOOPML_* environment variables override these.", "[loopml]"]
    for key in sorted(values):
        escaped = values[key].replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key} = "{escaped}"')
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _absolutize(value: str, base: Path) -> str:
    """Relative local paths in the config are relative to the workspace root."""
    if "://" in value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _normalize_db_url(value: str, root: Path) -> str:
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        rel = value[len("sqlite:///") :]
        if rel and rel != ":memory:" and not Path(rel).is_absolute():
            return f"sqlite:///{root / rel}"
    return value


def resolve_settings(root: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings for the workspace at ``root``: environment > config file > defaults."""
    env = os.environ if env is None else env
    root = root.resolve()
    values = default_values(root)
    sources = dict.fromkeys(values, "default")
    ws = root / WORKSPACE_DIRNAME
    for key, value in read_config_file(ws / CONFIG_FILENAME).items():
        values[key] = value
        sources[key] = "config"
    for key, var in ENV_VARS.items():
        if env.get(var):
            values[key] = env[var]
            sources[key] = f"env {var}"
    values["db_url"] = _normalize_db_url(values["db_url"], root)
    values["artifacts"] = _absolutize(values["artifacts"], root)
    _check_url("db_url", values["db_url"], ("sqlite", "postgresql"))
    if "://" in values["artifacts"] and not values["artifacts"].split("://", 1)[0]:
        raise ConfigError(f"The artifacts location {values['artifacts']!r} has an empty scheme.")
    actor = values.pop("actor", None) or default_actor(env)
    return Settings(root=root, actor=actor, sources=sources, **values)


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> None:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    base = scheme.split("+", 1)[0]
    if base not in schemes:
        var = ENV_VARS[name]
        raise ConfigError(
            f"The database URL {url!r} is not supported (setting {name}, env {var}).",
            hint="Use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB.",
        )


def default_actor(env: Mapping[str, str]) -> str:
    """Who the audit trail names when LOOPML_ACTOR is unset: $USER, else the OS account of this process."""
    if env.get("USER"):
        return env["USER"]
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"
