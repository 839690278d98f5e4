"""Warnings from dependencies stay off the user's terminal (logged at debug level); promptopt's own still show."""
from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import torch

from promptopt.cli import dependency_warnings
from promptopt.optimizer import loop

SCRIPT = """
import warnings
from promptopt.cli import main
import promptopt.evaluators.registry as registry

real = registry.available

def noisy():
    warnings.warn_explicit("`past_key_values` is deprecated", FutureWarning, {torch!r}, 1789)
    warnings.warn_explicit("a plugin took a used name", UserWarning, {ours!r}, 10)
    return real()

registry.available = noisy
main(["evaluators", "list"])
"""


def test_dependency_warnings_are_logged_not_shown_and_ours_still_show():
    script = SCRIPT.format(torch=torch.nn.modules.module.__file__, ours=loop.__file__)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "tool_call" in done.stdout
    assert "a plugin took a used name" in done.stderr
    assert "past_key_values" not in done.stderr


def test_a_routed_dependency_warning_reaches_the_debug_log(caplog, monkeypatch):
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    dependency_warnings.route_dependency_warnings()
    with caplog.at_level(logging.DEBUG, logger="promptopt.dependencies"), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning("deprecated thing", FutureWarning, torch.nn.modules.module.__file__, 1789)
    assert "FutureWarning: deprecated thing" in caplog.text
