"""The OpenAI-compatible backend used from several threads at once (the scorer keeps two chunks in flight) never
hangs or crashes, at any concurrency, against a real local HTTP server and the real `openai` client."""
from __future__ import annotations

import threading

import pytest

from promptopt.models.openai_compat import Endpoint, OpenAICompatibleModel
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter

TOOLS = [{"type": "function", "function": {"name": "find_stores", "parameters": {"type": "object"}}}]
RUNS_PER_LEVEL = 20
SECONDS_PER_RUN = 20


@pytest.fixture(scope="module")
def endpoint():
    with ChatServer(ExamplesRouter({"q0": "find_stores"})) as server:
        yield server.base_url


def race(model: OpenAICompatibleModel, threads: int = 2, calls: int = 3) -> list[BaseException | list]:
    """`threads` threads call a fresh backend's `route` at the same moment; each thread's result or error."""
    start = threading.Barrier(threads)
    outcomes: list[BaseException | list] = [[] for _ in range(threads)]

    def work(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = model.route('User: q0\nAssistant: {"name": "find_stores"}', TOOLS,
                                          [[{"role": "user", "content": f"q{i}"}] for i in range(calls)])
        except BaseException as error:  # noqa: BLE001 - the test reports any failure
            outcomes[index] = error

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(SECONDS_PER_RUN)
        assert not worker.is_alive(), f"route hung for {SECONDS_PER_RUN} s at concurrency {model.concurrency}"
    return outcomes


@pytest.mark.parametrize("concurrency", range(1, 9))
def test_two_threads_on_one_fresh_backend_neither_hang_nor_crash(endpoint, concurrency):
    for _ in range(RUNS_PER_LEVEL):
        model = OpenAICompatibleModel(Endpoint("scripted", endpoint, "key"), concurrency=concurrency)
        try:
            outcomes = race(model)
        finally:
            model.close()
        for outcome in outcomes:
            assert not isinstance(outcome, BaseException), repr(outcome)
            assert [r.call.name for r in outcome] == ["find_stores", "none", "none"]
            assert not any(r.error for r in outcome)


def test_fully_cached_routing_does_not_wait_behind_a_fresh_chunk(tmp_path):
    from promptopt.models.embedded import EmbeddedModel
    from promptopt.models.response_cache import ResponseCache

    model = EmbeddedModel(cache=ResponseCache(tmp_path))
    conversations = [[{"role": "user", "content": f"where is order {i}"}] for i in range(3)]
    for conversation in conversations:
        model.cache.put(model._route_request("p", TOOLS, conversation, False),
                        {"name": "find_stores", "arguments": {}, "tokens_in": 12})
    busy, release = threading.Event(), threading.Event()

    def fresh_chunk() -> None:  # another thread scoring uncached cases holds the model
        with model._lock:
            busy.set()
            release.wait(10)

    holder = threading.Thread(target=fresh_chunk, daemon=True)
    holder.start()
    busy.wait(5)
    outcome: list = []
    reader = threading.Thread(target=lambda: outcome.append(model.route("p", TOOLS, conversations)), daemon=True)
    reader.start()
    reader.join(2)
    release.set()
    assert not reader.is_alive(), "a fully cached chunk waited for the model lock"
    assert [r.call.name for r in outcome[0]] == ["find_stores"] * 3 and all(r.record.cache_hit for r in outcome[0])
