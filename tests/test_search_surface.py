"""What the engine lets a strategy touch, and what a resumed run must mirror: a strategy sees a narrow context (no
store, no unbudgeted scorer, training cases only), and the live and the resumed store implement the same search
writes."""
from __future__ import annotations

import inspect

import pytest

from promptopt.case import Case, ToolCall
from promptopt.evaluators.tool_call import ToolCallEvaluator
from promptopt.optimizer.loop import RunConfig, run_optimization
from promptopt.optimizer.strategy import StrategyBase
from promptopt.runs.resume import ResumedStore
from promptopt.runs.search_writes import SEARCH_WRITES
from promptopt.runs.store import Store
from promptopt.tasks.tool_routing import ToolRoutingTask
from tests.fakes import FakeRouter

TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
         for n in ("get_order_status", "find_stores")]
SEED = "You help shoppers. Tools: get_order_status, find_stores."
NOT_THE_SEARCH = {"import_cases", "delete_cases", "delete_run"}
"""Store writes no search makes: a case import happens before a run, deleting cases or runs after it (or never),
outside the replay."""


class Expected(FakeRouter):
    name = "expected"

    def __init__(self, cases: list[Case]) -> None:
        self.tools = {c.query: c.expected.name for c in cases}

    def choose(self, system_prompt, conversation):
        return self.tools[conversation[-1]["content"]]


class Probe(StrategyBase):
    """Records what its context offers, then tries to score outside the training split."""

    name = "probe"
    seen: dict = {}

    def expected_calls(self, size):
        return 0

    def propose(self, context, step):
        Probe.seen = {name: hasattr(context, name) for name in ("store", "scorer", "run_id", "writes", "budget")}
        outside = [case for case in Probe.all_cases if case.id not in {c.id for c in context.train}]
        with pytest.raises(ValueError, match="training cases only"):
            context.score(context.incumbent.id, context.incumbent.prompt, outside[:1], "peek")
        Probe.seen["refused_outside"] = True
        return []


@pytest.fixture
def cases(store) -> list[Case]:
    made = [Case(query=f"request {i}", expected=ToolCall(["get_order_status", "find_stores"][i % 2]))
            for i in range(40)]
    return store.cases(store.import_cases(made).case_ids)


def test_a_strategy_reaches_neither_the_store_nor_unbudgeted_scoring(store, cases):
    Probe.all_cases = cases
    run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, cases, Expected(cases), Probe(),
                     ToolCallEvaluator(), RunConfig(strategy="probe", steps=1))
    assert Probe.seen == {"store": False, "scorer": False, "run_id": False, "writes": False, "budget": False,
                          "refused_outside": True}


def test_the_resumed_store_implements_every_search_write_itself():
    own = {name for name, value in vars(ResumedStore).items() if inspect.isfunction(value)}
    assert set(SEARCH_WRITES) <= own, "ResumedStore must mirror every search write, not forward it"
    assert not hasattr(ResumedStore, "__getattr__"), "a forwarding ResumedStore would write new methods twice"
    assert set(SEARCH_WRITES) <= {name for name in dir(Store) if not name.startswith("_")}


def test_every_store_write_is_a_search_write_or_declared_outside_the_search():
    writes = {name for name in dir(Store) if name.startswith(("add_", "create_", "set_", "update_", "import_",
                                                               "delete_"))}
    assert writes - set(SEARCH_WRITES) - NOT_THE_SEARCH == set(), \
        "a new Store write: add it to SearchWrites (and ResumedStore) or to NOT_THE_SEARCH"
