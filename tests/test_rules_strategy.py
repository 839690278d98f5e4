"""The rules strategy: rules induced from training confusions, in the requests' language, accepted like any other
candidate; a scripted router that follows written rules stands in for the model."""
from __future__ import annotations

import re

from promptopt.case import Case, ToolCall
from promptopt.evaluators.tool_call import ToolCallEvaluator
from promptopt.optimizer.loop import RunConfig, run_optimization
from promptopt.optimizer.strategies.rules import RULES_HEADER, RulesStrategy, language, with_rules, write_rule
from promptopt.tasks.tool_routing import ToolRoutingTask
from tests.fakes import FakeRouter

NAMES = ("get_order_status", "find_stores", "get_promotions")
TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
         for n in NAMES]
SEED = "You help shoppers.\n<!-- protected -->\nNo medical advice.\n<!-- /protected -->\n"


class RuleFollower(FakeRouter):
    """Calls the tool a routing rule names for this kind of request (`call X` / `调用 X` next to a quoted request
    of the same tool), else always `get_order_status`."""

    name = "rule-follower"

    def __init__(self, cases: list[Case]) -> None:
        self.expected = {c.query: c.expected.name for c in cases}

    def choose(self, system_prompt, conversation):
        expected = self.expected[conversation[-1]["content"]]
        rules = system_prompt.split(RULES_HEADER)[1] if RULES_HEADER in system_prompt else ""
        kind = expected.replace("_", " ")
        for line in rules.splitlines():
            if kind in line and re.search(rf"(call|调用) {expected}", line):
                return expected
            if expected == "none" and ("without a tool" in line or "不调用工具" in line) and kind in line:
                return "none"
        return "get_order_status"


def make_cases(store) -> list[Case]:
    cases = []
    for i in range(120):
        tool = [*NAMES, "none"][i % 4]
        query = f"{tool.replace('_', ' ')} request {i}" if i % 8 < 4 else f"关于 {tool.replace('_', ' ')} 的请求 {i}"
        cases.append(Case(query=query, expected=ToolCall(tool), label="good" if i % 8 == 2 else "bad"))
    return store.cases(store.import_cases(cases).case_ids)


def test_rules_fix_confused_pairs_and_keep_protected_text(store):
    cases = make_cases(store)
    report = run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, cases, RuleFollower(cases),
                              RulesStrategy(max_rules=6, quotes=2, candidates=2, train_sample=40),
                              ToolCallEvaluator(check_arguments=False), RunConfig(steps=1))
    assert report["seed"]["test_accuracy"] < 0.3
    assert report["winner"]["test_accuracy"] > 0.9 and report["p_value"] < 0.001
    winner = store.candidate(report["winner"]["candidate_id"])
    assert winner.operator == "rules"
    assert "<!-- protected -->\nNo medical advice.\n<!-- /protected -->" in winner.prompt
    section = winner.prompt.split(RULES_HEADER)[1]
    assert re.search(r"(call|调用) find_stores", section) and re.search(r"without a tool|不调用工具", section)
    assert {tuple(p[:2]) for p in winner.details["pairs"]} >= {("find_stores", "get_order_status")}


def test_rules_are_written_in_the_quoted_requests_language():
    zh = write_rule("none", "get_promotions", [Case(query="谢谢你呀", expected=ToolCall("none"))])
    en = write_rule("find_stores", "none", [Case(query="where is the nearest shop", expected=ToolCall("find_stores"))])
    assert zh == "- 像「谢谢你呀」这样的请求：不调用工具，直接回复，不要调用 get_promotions。"
    assert en == "- Requests like 'where is the nearest shop': call find_stores, do not just reply."
    assert language("附近有门店吗 open now") == "zh" and language("is the store open 今天") == "en"


def test_a_new_rule_set_replaces_the_old_section():
    once = with_rules(SEED, ["- Requests like 'a': call find_stores, not none."])
    twice = with_rules(once, ["- Requests like 'b': call get_promotions, not none."])
    assert twice.count(RULES_HEADER) == 1 and "'a'" not in twice and "'b'" in twice
    assert twice.startswith(SEED.rstrip())
