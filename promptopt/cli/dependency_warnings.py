"""Warnings raised from inside dependencies (torch's and transformers' deprecation notices, say) are not the
user's to act on: they go to the `promptopt.dependencies` logger at debug level instead of the terminal, while
promptopt's own warnings (a plugin that takes a used name) still show."""
from __future__ import annotations

import importlib
import logging
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("promptopt.dependencies")
SUBPACKAGES = ("promptopt", "promptopt.optimizer", "promptopt.evaluators", "promptopt.runs")


@lru_cache(maxsize=1)
def package_folders() -> tuple[str, ...]:
    """promptopt's own folders (in an editable install they are apart: `optimizer/`, `runs/` ...)."""
    folders = {Path(importlib.import_module(name).__file__).resolve().parent for name in SUBPACKAGES}
    return tuple(str(folder) + os.sep for folder in folders)


def from_promptopt(filename: str) -> bool:
    """Whether a warning was raised in promptopt's own code."""
    return bool(filename) and str(Path(filename).resolve()).startswith(package_folders())


def route_dependency_warnings() -> None:
    """Send dependency warnings to the debug log; promptopt's own are shown as before."""
    shown = warnings.showwarning
    if getattr(shown, "promptopt", False):
        return

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if from_promptopt(filename):
            shown(message, category, filename, lineno, file, line)
        else:
            LOGGER.debug("%s:%s: %s: %s", filename, lineno, category.__name__, message)

    show.promptopt = True  # type: ignore[attr-defined]
    warnings.showwarning = show
