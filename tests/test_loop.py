"""The run loop's mechanics on a real SQLite store, with scripted routers standing in for the model."""
from __future__ import annotations

import pytest

from promptopt.case import Case, ToolCall
from promptopt.evaluators.tool_call import ToolCallEvaluator
from promptopt.optimizer.candidates import Candidate
from promptopt.optimizer.prompt_text import EXAMPLES_HEADER, render_demos
from promptopt.optimizer.strategies.demos import DemosStrategy, demo_pool
from promptopt.optimizer.loop import RunConfig, run_optimization
from promptopt.optimizer.splits import TooFewCases
from promptopt.runs.report import format_report
from promptopt.runs.export import export_prompt
from promptopt.tasks.tool_routing import ToolRoutingTask
from tests.fakes import FakeRouter

TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
         for n in ("get_order_status", "find_stores", "get_promotions")]
SEED = "You help shoppers. Tools: get_order_status, find_stores, get_promotions.\n" \
       "<!-- protected -->\nNo medical advice.\n<!-- /protected -->\n"


class ScriptedRouter(FakeRouter):
    """Answers a case right when its expected tool is called in the prompt's examples, else says none.
    With `break_good`, a prompt with examples gets every `good` case wrong."""

    name = "scripted"
    latency_s = 0.001

    def __init__(self, cases: list[Case], break_good: bool = False, fail_after: int | None = None) -> None:
        self.answers = {c.query: c for c in cases}
        self.break_good = break_good
        self.fail_after = fail_after
        self.calls = 0

    def choose(self, system_prompt, conversation):
        examples = system_prompt.split(EXAMPLES_HEADER)[1] if EXAMPLES_HEADER in system_prompt else ""
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise ConnectionError("scripted failure")
        case = self.answers[conversation[-1]["content"]]
        name = case.expected.name if f'"name": "{case.expected.name}"' in examples else "none"
        if examples and self.break_good and case.label == "good":
            name = "find_stores" if case.expected.name != "find_stores" else "get_promotions"
        return name


def make_cases(store) -> list[Case]:
    cases = []
    for i in range(96):
        tool = ["get_order_status", "find_stores", "get_promotions", "none"][i % 4]
        cases.append(Case(query=f"request {i} for {tool}", expected=ToolCall(tool),
                          label="good" if i % 8 in (2, 3) else "bad"))
    result = store.import_cases(cases)
    return store.cases(result.case_ids)


def run(store, router, **config):
    cases = make_cases(store) if not hasattr(router, "answers") else store.cases()
    return run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, cases, router,
                            DemosStrategy(n_demos=8, candidates=3),
                            ToolCallEvaluator(check_arguments=False), RunConfig(steps=2, **config))


def test_demos_run_beats_seed_and_records_everything(store):
    cases = make_cases(store)
    router = ScriptedRouter(cases)
    report = run(store, router)
    assert report["status"] == "finished"
    assert store.run(report["run_id"]).summary == report
    assert report["seed"]["test_accuracy"] == pytest.approx(0.25)
    assert report["winner"]["test_accuracy"] == 1.0
    assert report["fixed"] == 18 and report["broken"] == 0 and report["p_value"] < 0.001
    assert report["model_calls"] == router.calls
    candidates = store.candidates(report["run_id"])
    winner = store.candidate(report["winner"]["candidate_id"])
    assert winner.status == "accepted" and winner.operator == "demos"
    assert set(winner.details["demo_case_ids"]) <= {c.id for c in cases}
    assert winner.prompt.startswith(SEED.rstrip()) and EXAMPLES_HEADER in winner.prompt
    assert {c.step for c in candidates} == {0, 1, 2}
    assert [s.step for s in store.steps(report["run_id"])] == [0, 1, 2]
    assert export_prompt(store, report["run_id"], "md") == winner.prompt
    assert "<!-- protected -->" not in export_prompt(store, report["run_id"], "txt")


def test_demo_cases_never_score_themselves(store):
    cases = make_cases(store)
    report = run(store, ScriptedRouter(cases))
    for candidate in store.candidates(report["run_id"]):
        demos = set(candidate.details.get("demo_case_ids", []))
        splits = store.run_splits(report["run_id"])
        assert all(splits[i] == "train" for i in demos)
        scored_on_train = {i for i in store.evaluations(candidate.id) if splits[i] == "train"}
        assert not demos & scored_on_train


@pytest.mark.parametrize("max_broken, accepted", [(0, False), (100, True)])
def test_regression_guard(store, max_broken, accepted):
    cases = make_cases(store)
    report = run(store, ScriptedRouter(cases, break_good=True), max_broken=max_broken)
    assert (report["accepted"] > 0) is accepted
    if not accepted:
        rejected = [c for c in store.candidates(report["run_id"]) if c.status == "rejected"]
        assert rejected and "previously-good" in rejected[0].rejection


def test_budget_stops_the_search_but_not_the_report(store):
    cases = make_cases(store)
    router = ScriptedRouter(cases)
    report = run(store, router, budget_calls=60)
    assert report["status"] == "finished"
    assert any("budget exhausted" in s["message"] for s in report["steps"])
    assert router.calls - 2 * report["test_cases"] <= 60


def test_a_budget_spent_before_validation_reports_no_validation_score(store):
    cases = make_cases(store)
    report = run(store, ScriptedRouter(cases), budget_calls=40)
    assert report["steps"][-1]["message"].startswith("budget exhausted")
    assert report["seed"]["val_accuracy"] is None and "n/a" in format_report(report)


def test_too_few_cases_for_every_split_is_refused_before_a_run_exists(store):
    two = make_cases(store)[:2]
    with pytest.raises(TooFewCases, match="2 case\\(s\\) leave the .* split\\(s\\) empty"):
        run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, two, ScriptedRouter(two),
                         DemosStrategy(), ToolCallEvaluator(check_arguments=False), RunConfig())
    assert store.runs() == []


def test_a_crash_marks_the_run_failed(store):
    cases = make_cases(store)
    with pytest.raises(ConnectionError):
        run(store, ScriptedRouter(cases, fail_after=40))
    (row,) = store.runs()
    assert row.status == "failed" and "scripted failure" in row.error
    assert store.evaluations(row.seed_candidate_id)


class ProtectedEditor:
    """A strategy whose only idea edits the protected region."""

    name = "editor"

    def propose(self, context, step):
        prompt = context.incumbent.prompt.replace("No medical advice.", "Give medical advice.")
        rejection = context.register(Candidate(prompt=prompt, operator="edit"), step)
        assert rejection == "a protected region was edited, removed or added"
        return []


def test_invalid_candidates_never_reach_evaluation(store):
    cases = make_cases(store)
    report = run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, cases, ScriptedRouter(cases),
                              ProtectedEditor(), ToolCallEvaluator(), RunConfig(steps=1))
    invalid = [c for c in store.candidates(report["run_id"]) if c.status == "invalid"]
    assert invalid and "protected region" in invalid[0].rejection
    assert store.evaluations(invalid[0].id) == {}
    assert report["winner"]["candidate_id"] == report["seed"]["candidate_id"]
    assert report["invalid_candidates"] == 1


class NoneRouter(ScriptedRouter):
    """Says none whatever the prompt, so no demo set can help."""

    def choose(self, system_prompt, conversation):
        return ToolCall()


def test_sets_no_better_on_training_sample_never_reach_validation(store):
    cases = make_cases(store)
    report = run(store, NoneRouter(cases))
    splits = store.run_splits(report["run_id"])
    demo_sets = [c for c in store.candidates(report["run_id"]) if c.operator == "demos"]
    assert demo_sets and all(c.status == "rejected" for c in demo_sets)
    assert all("not better than the incumbent on the training sample" in c.rejection for c in demo_sets)
    assert all(splits[i] == "train" for c in demo_sets for i in store.evaluations(c.id))
    assert "no valid candidate beat the incumbent" in report["steps"][1]["message"]


def test_demos_on_a_multi_turn_task_show_the_turns_before_the_request():
    earlier = [{"role": "user", "content": "I need a hotel in New York for a business trip " + "x" * 150},
               {"role": "assistant", "content": "The first of 10 hotels I found is the 1 Hotel Brooklyn Bridge."}]
    multi = [Case(query=f"book it please {i}", context=earlier, expected=ToolCall(tool))
             for i, tool in enumerate(["reserve_hotel", "none"] * 5)]
    single = [Case(query="find a hotel", expected=ToolCall("search_hotels"))]
    assert demo_pool(multi + single) == multi + single  # mostly multi-turn: every short request may be a demo
    assert demo_pool(single * 10 + multi[:2]) == single * 10  # mostly single-turn: single-turn demos only
    prompt = render_demos("Route hotel requests.", [multi[0], multi[1]])
    first, second = prompt.split("## Examples\n")[1].strip().split("\n\n")
    lines = first.splitlines()
    assert lines[0].startswith("User: I need a hotel in New York") and lines[0].endswith("…") and len(lines[0]) < 140
    assert lines[1:] == ["Assistant: The first of 10 hotels I found is the 1 Hotel Brooklyn Bridge.",
                         "User: book it please 0", 'Assistant: {"name": "reserve_hotel", "arguments": {}}']
    assert second.splitlines()[-1] == "Assistant: (answers directly, without calling a tool)"
