"""Where promptopt keeps its files: one home folder holding the store and the converted model weights."""
from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """`$PROMPTOPT_HOME`, or `~/.promptopt` when unset."""
    return Path(os.environ.get("PROMPTOPT_HOME") or Path.home() / ".promptopt")


def default_db_url() -> str:
    """`$PROMPTOPT_DB` (any SQLAlchemy URL), or a SQLite file in the home folder."""
    return os.environ.get("PROMPTOPT_DB") or f"sqlite:///{home_dir() / 'promptopt.db'}"


def model_cache_dir() -> Path:
    """Folder for converted model weights, so later loads skip the slow GGUF dequantisation."""
    return home_dir() / "models"
