"""Shared fixtures: the bundled task, a fresh SQLite store per test, and one embedded model per session."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptopt.runs.store import Store
from promptopt.tasks import bundled_task

ROOT = Path(__file__).resolve().parents[1]


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


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def case_record(query: str, tool: str | None, label: str = "bad", **extra) -> dict:
    record = {"query": query, "context": [], "expected": {"tool": tool, "arguments": {}}, "label": label}
    record.update(extra)
    return record
