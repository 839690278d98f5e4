"""Where promptopt keeps its files (one home folder: the store, converted model weights, the response cache) and
reads its optional JSON config file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def home_dir() -> Path:
    """`$PROMPTOPT_HOME`, or `~/.promptopt` when unset."""
    return Path(os.environ.get("PROMPTOPT_HOME") or Path.home() / ".promptopt")


def default_db_url() -> str:
    """`$PROMPTOPT_DB` (any SQLAlchemy URL), or a SQLite file in the home folder."""
    return os.environ.get("PROMPTOPT_DB") or f"sqlite:///{home_dir() / 'promptopt.db'}"


def model_cache_dir() -> Path:
    """Folder for converted model weights, so later loads skip the slow GGUF dequantisation."""
    return home_dir() / "models"


def response_cache_dir() -> Path:
    """`$PROMPTOPT_CACHE_DIR`, or the home folder's `cache/`: model responses keyed by request."""
    return Path(os.environ.get("PROMPTOPT_CACHE_DIR") or home_dir() / "cache")


class ConfigFileError(ValueError):
    """A config file that cannot be read or has the wrong shape."""


def config_path() -> Path:
    """`$PROMPTOPT_CONFIG`, or `config.json` in the home folder."""
    return Path(os.environ.get("PROMPTOPT_CONFIG") or home_dir() / "config.json")


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The JSON config file (see the README): `task_model` and `optimizer_model` settings, `concurrency`,
    `prices`. A missing default file is an empty config; a missing file named explicitly is an error."""
    target = Path(path) if path is not None else config_path()
    if not target.exists():
        if path is not None or os.environ.get("PROMPTOPT_CONFIG"):
            raise ConfigFileError(f"{target}: config file not found")
        return {}
    try:
        config = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"{target}: cannot read: {error}") from error
    except json.JSONDecodeError as error:
        raise ConfigFileError(f"{target}:{error.lineno}: invalid JSON: {error.msg}") from error
    if not isinstance(config, dict):
        raise ConfigFileError(f"{target}: expected a JSON object")
    for key in ("task_model", "optimizer_model", "prices"):
        if key in config and not isinstance(config[key], dict):
            raise ConfigFileError(f"{target}: {key}: expected a JSON object")
    return config
