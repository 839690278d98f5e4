"""Shared fixtures: the bundled task, a fresh SQLite store per test, one embedded model per session, and the
case sets and endpoints that more than one test module uses (fixtures live here so that no test module
imports another; plain helpers are in `tests/support.py`, fakes in `tests/fakes.py`)."""
from __future__ import annotations

import os

import pytest

from promptopt.case import Case, ToolCall
from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from promptopt.server import ChatServer, EmbeddedResponder
from promptopt.tasks import bundled_task
from tests.fakes import TOOL_NAMES
from tests.full_disk import small_disk  # noqa: F401  (fixture: a real disk that fills up)
from tests.postgres import postgres_cluster, store_url  # noqa: F401  (fixtures: a throwaway PostgreSQL, a fresh store)
from tests.support import share_weights, write_jsonl

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


@pytest.fixture
def server(shared_weights):
    """`promptopt serve`'s server in process: the session's embedded model behind the chat-completions API."""
    with ChatServer(EmbeddedResponder(check_arguments=False)) as running:
        yield running


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


@pytest.fixture(scope="module")
def bundled_cases(task):
    """The bundled task's single-turn cases (no context)."""
    cases = [c for path in task.case_files for c in read_cases(path, task.tools)]
    return [c for c in cases if not c.context]


@pytest.fixture(scope="module")
def expected(bundled_cases):
    """Each bundled single-turn case's expected tool, by query: the answers `ExamplesRouter` is scripted with."""
    return {c.query: c.expected.name for c in bundled_cases}


@pytest.fixture
def bundled_case_file(tmp_path, bundled_cases):
    """A case file of every second bundled single-turn case, without the model's actual answers."""
    records = [{"query": c.query, "expected": c.expected.to_json(), "label": c.label} for c in bundled_cases[::2]]
    return write_jsonl(tmp_path / "cases.jsonl", records)


@pytest.fixture
def scripted_cases(store):
    """120 stored bad cases of the scripted shop task (`tests.fakes.TOOLS`) that the OPRO, APO and BPO tests
    route with `RuleRouter`: `request {i} about {tool}`, the expected tool cycling through the four tools and none."""
    made = []
    for i in range(120):
        tool = [*TOOL_NAMES, "none"][i % 5]
        made.append(Case(query=f"request {i} about {tool}", expected=ToolCall(tool), label="bad"))
    return store.cases(store.import_cases(made).case_ids)
