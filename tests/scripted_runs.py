"""Real `python -m promptopt.cli run` processes against a scripted local endpoint (`ChatServer` with
`ExamplesRouter`): what the interruption, resume and kill-soak tests and `benchmarks/kill_soak.py` share."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from promptopt.runs.case_import import read_cases
from promptopt.tasks import bundled_task
from tests.conftest import ROOT, write_jsonl
from tests.test_openai_backend import ExamplesRouter

T = TypeVar("T")


def scripted_task(folder: Path, every: int = 2) -> tuple[Path, dict[str, str]]:
    """A case file of every `every`-th bundled single-turn case, and the scripted endpoint's answers (query -> tool)."""
    task = bundled_task("tool-routing")
    cases = [c for path in task.case_files for c in read_cases(path, task.tools) if not c.context][::every]
    records = [{"query": c.query, "expected": c.expected.to_json(), "label": c.label} for c in cases]
    return write_jsonl(folder / "cases.jsonl", records), {c.query: c.expected.name for c in cases}


class Stalling(ExamplesRouter):
    """A hanging endpoint: every request waits until `release` is set (or two minutes pass)."""

    def __init__(self, expected: dict[str, str]) -> None:
        super().__init__(expected)
        self.arrived = threading.Event()
        self.release = threading.Event()

    def respond(self, request: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
        self.arrived.set()
        self.release.wait(120)
        return super().respond(request)


def run_command(db: str, case_file: Path, base_url: str, *extra: str) -> list[str]:
    """`promptopt run` on `case_file` with the scripted model at `base_url`."""
    return [sys.executable, "-m", "promptopt.cli", "run", "--cases", str(case_file), "--model", "scripted",
            "--base-url", base_url, "--db", db, "--quiet", *extra]


def resume_command(db: str, run_id: str, *extra: str) -> list[str]:
    """`promptopt run --resume RUN_ID`."""
    return [sys.executable, "-m", "promptopt.cli", "run", "--resume", run_id, "--db", db, "--quiet", *extra]


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `command` in the repository, with this process's environment plus `env`."""
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def wait_until(check: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.05) -> T:
    """The first true value `check` returns, polling; `AssertionError` naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
