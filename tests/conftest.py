"""Shared fixtures: the bundled task, a fresh SQLite store per test, and one embedded model per session."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from promptopt.tasks import bundled_task
from tests.postgres import postgres_cluster, store_url  # noqa: F401  (fixtures: a throwaway PostgreSQL, a fresh store)

ROOT = Path(__file__).resolve().parents[1]
# The suite's mechanics run on SmolLM2-135M, five times faster than the default Qwen2.5-Coder-0.5B; the tests of
# the default itself (test_native_routing.py) name it. Set before anything builds a backend or a subprocess.
os.environ.setdefault("PROMPTOPT_EMBEDDED_MODEL", "smollm2-135m")


@pytest.fixture(autouse=True)
def isolated_response_cache(tmp_path, monkeypatch):
    """Each test starts with an empty response cache, so no answer comes from an earlier run."""
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "response-cache"))
    monkeypatch.delenv("PROMPTOPT_CONFIG", raising=False)


@pytest.fixture(scope="session")
def task():
    return bundled_task("tool-routing")


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.fixture(scope="session")
def embedded():
    from promptopt.models.embedded import EmbeddedModel

    model = EmbeddedModel()
    model._load()
    return model


@pytest.fixture
def shared_weights(monkeypatch, embedded):
    """Backends built during the test (CLI, API, server) reuse the session's loaded weights."""
    return share_weights(monkeypatch, embedded)


def share_weights(monkeypatch: pytest.MonkeyPatch, embedded):
    """Make embedded backends built from now on reuse `embedded`'s loaded weights (for fixtures of any scope)."""
    from promptopt.models import embedded as module

    original = module.EmbeddedModel
    monkeypatch.setattr(module, "EmbeddedModel",
                        lambda **kw: original(model=embedded._model, tokenizer=embedded._tokenizer, **kw))
    return embedded


@pytest.fixture
def small_case_file(tmp_path, task):
    """Two bad and two good cases per expected tool, taken from the bundled task."""
    picked, seen = [], {}
    for path in task.case_files:
        for case in read_cases(path, task.tools):
            key = (case.label, case.expected.name)
            if seen.get(key, 0) < 2 and not case.context:
                seen[key] = seen.get(key, 0) + 1
                picked.append({"query": case.query, "context": [], "expected": case.expected.to_json(),
                               "actual": case.actual.to_json() if case.actual else None, "label": case.label})
    return write_jsonl(tmp_path / "small.jsonl", picked)


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def case_record(query: str, tool: str | None, label: str = "bad", **extra) -> dict:
    record = {"query": query, "context": [], "expected": {"tool": tool, "arguments": {}}, "label": label}
    record.update(extra)
    return record
