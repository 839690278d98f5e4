"""promptopt: automatic system-prompt optimization from bad cases.

The names below load on first use: importing any part of promptopt (the command line above all, whose start-up
Ctrl-C must be able to stop cleanly) does not first load the whole Python API."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptopt.api import RunResult, estimate, optimize, resume
    from promptopt.case import Case, ToolCall
    from promptopt.request import RunRequest

__all__ = ["Case", "RunRequest", "RunResult", "ToolCall", "estimate", "optimize", "resume"]
__version__ = "0.1.0"
_HOMES = {"Case": "promptopt.case", "ToolCall": "promptopt.case", "RunRequest": "promptopt.request",
          "RunResult": "promptopt.api", "estimate": "promptopt.api", "optimize": "promptopt.api",
          "resume": "promptopt.api"}
"""The module each name of `__all__` comes from."""


def __getattr__(name: str) -> Any:
    """`promptopt.optimize` and the other names of `__all__`, imported from their module the first time."""
    if name not in _HOMES:
        raise AttributeError(f"module 'promptopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
