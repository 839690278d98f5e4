"""The DSPy strategies: scripted task and optimizer models for the mechanics, the real embedded model end to end
(bootstrap and COPRO); every exported winner re-scores to the accuracy its run reported."""
from __future__ import annotations

import re
import sys

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from promptopt.case import Case, ToolCall
from promptopt.cli import main
from promptopt.evaluators.tool_call import ToolCallEvaluator
from promptopt.markup import protected_regions
from promptopt.optimizer import make_strategy, strategy_names
from promptopt.optimizer.budget import Budget
from promptopt.optimizer.loop import RunConfig, run_optimization
from promptopt.optimizer.prompt_text import render_demo
from promptopt.optimizer.scorer import Scorer, accuracy
from promptopt.optimizer.strategies.dspy.bridge import import_dspy
from promptopt.runs.export import export_prompt
from promptopt.runs.store import Store
from promptopt.runs.tables import ModelCallRow
from promptopt.tasks.tool_routing import ToolRoutingTask
from tests.fakes import PROTECTED, SEED, TOOL_NAMES, TOOLS, FakeRouter, FakeWriter

JUNK = "lol junk"


class TeachableRouter(FakeRouter):
    """Routes a case right when the prompt has a rule (`TOOL handles`) or a demo line (`TOOL: ...`) for its tool,
    else says none."""

    name = "scripted-task"

    def __init__(self, cases: list[Case]) -> None:
        self.expected = {c.query: c.expected.name for c in cases}

    def choose(self, system_prompt, conversation):
        tool = self.expected[conversation[-1]["content"]]
        taught = f"{tool} handles" in system_prompt or f'"name": "{tool}"' in system_prompt
        return tool if taught else "none"


class RuleWriter(FakeWriter):
    """An optimizer model that answers in free text, not in DSPy's field format: sample i teaches the first
    i + 1 tools; its second call is junk that drops every tool name."""

    name = "scripted-optimizer"

    def __init__(self) -> None:
        self.calls = 0

    def reply(self, messages, temperature, sample_index):
        self.calls += 1
        rules = "\n".join(f"{t} handles its own requests." for t in TOOL_NAMES[: sample_index % 4 + 1])
        return JUNK if self.calls == 2 else f"You help shoppers. Tools: {', '.join(TOOL_NAMES)}.\n{rules}"


@pytest.fixture
def cases(store):
    made = [Case(query=f"request {i} about {tool}", expected=ToolCall(tool), label="bad")
            for i in range(60) for tool in [[*TOOL_NAMES, "none"][i % 5]]]
    return store.cases(store.import_cases(made).case_ids)


def run(store, cases, strategy: str, **config):
    report = run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, cases, TeachableRouter(cases),
                              make_strategy(strategy, {}), ToolCallEvaluator(),
                              RunConfig(strategy=strategy, max_broken=0, **config), optimizer_model=RuleWriter())
    return report


def rescored(store: Store, run_id: str, prompt: str, router, tools) -> float:
    """The exported prompt's accuracy on the run's test split, from a fresh scorer."""
    test_ids = [cid for cid, split in store.run_splits(run_id).items() if split == "test"]
    fresh = Scorer(ToolRoutingTask(tools=tools), router, ToolCallEvaluator(), store, run_id, Budget())
    candidate_id = store.add_candidate(run_id, 99, prompt, "rescore")
    return accuracy(fresh.score(candidate_id, prompt, store.cases(test_ids)))


def test_copro_instructions_become_the_candidate_through_scorer_and_optimizer_role(store, cases):
    report = run(store, cases, "dspy-copro")
    run_id = report["run_id"]
    rows = store.candidates(run_id)
    final = next(c for c in rows if c.operator == "dspy-copro")
    # the program's instructions, with the seed's protected region re-attached, are the candidate prompt
    assert final.prompt.startswith(final.details["instructions"]) and "handles its own requests" in final.prompt
    assert protected_regions(final.prompt) == [PROTECTED]
    assert final.status == "accepted" and report["winner"]["candidate_id"] == final.id
    # every prompt DSPy tried went through the shared scorer: stored evaluations, charged calls
    trials = [c for c in rows if c.operator == "dspy-copro-trial"]
    valid = [c for c in trials if c.status == "evaluated"]
    assert valid and all(store.evaluations(c.id) for c in valid)
    step = store.steps(run_id)[1].details
    assert step["dspy"]["evaluations"] > 0 and step["dspy"]["optimizer_calls"] == 5  # breadth 3, depth 2
    # the junk proposal is stored invalid, never evaluated, and the run goes on
    junk = [c for c in trials if c.prompt.startswith(JUNK)]
    assert len(junk) == 1 and junk[0].status == "invalid" and "no longer names" in junk[0].rejection
    assert not store.evaluations(junk[0].id)
    with store.session() as session:
        roles = [r for (r,) in session.execute(select(ModelCallRow.role).where(ModelCallRow.run_id == run_id))]
    assert roles.count("optimizer") == 5 and roles.count("task") >= step["dspy"]["evaluations"] // 2
    assert report["model_calls"] == len(roles)


def test_bootstrap_selects_training_demos_rendered_like_the_demos_strategy(store, cases):
    report = run(store, cases, "dspy-bootstrap")
    run_id = report["run_id"]
    final = next(c for c in store.candidates(run_id) if c.operator == "dspy-bootstrap")
    demos = final.prompt.split("## Examples\n")[1].strip().split("\nUser: ")
    train = {c.id: c for c in cases if store.run_splits(run_id)[c.id] == "train"}
    assert 1 <= len(demos) <= 8 and final.prompt.startswith(SEED.rstrip())
    for demo, case_id in zip(demos, final.details["demo_case_ids"]):
        assert "User: " + demo.removeprefix("User: ") == render_demo(train[case_id])
    assert report["winner"]["test_accuracy"] > report["seed"]["test_accuracy"]


@pytest.mark.parametrize("strategy", sorted(name for name in strategy_names() if name.startswith("dspy-")))
def test_each_dspy_strategy_exports_a_prompt_that_rescores_to_the_report(store, cases, strategy, capfd):
    report = run(store, cases, strategy)
    assert report["status"] == "finished"
    # DSPy's own trial log and progress bars stay off the terminal; the step's notes keep its figures
    printed = capfd.readouterr()
    assert "dspy" not in printed.err + printed.out and "it/s" not in printed.err
    exported = export_prompt(store, report["run_id"], "md")
    assert rescored(store, report["run_id"], exported, TeachableRouter(cases), TOOLS) == \
        report["winner"]["test_accuracy"]


def test_budget_exhaustion_inside_dspy_stops_the_search_cleanly(store, cases):
    report = run(store, cases, "dspy-copro", budget_calls=80)
    steps = store.steps(report["run_id"])
    assert report["status"] == "finished" and steps[-1].message.startswith("budget exhausted")
    assert report["winner"]["candidate_id"] == report["seed"]["candidate_id"]


def test_missing_dspy_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dspy", None)
    with pytest.raises(RuntimeError, match="pip install dspy"):
        import_dspy()


def test_dspy_options_are_refused_for_other_strategies(tmp_path):
    result = CliRunner().invoke(main, ["run", "--strategy", "opro", "--depth", "2",
                                       "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2 and "--depth" in result.output


@pytest.mark.model
@pytest.mark.parametrize("strategy, options", [
    ("dspy-bootstrap", {"candidates": 1, "n_demos": 2, "labeled_demos": 2, "train_sample": 4}),
    ("dspy-copro", {"candidates": 2, "depth": 1, "train_sample": 4, "reply_tokens": 32}),
])
def test_dspy_on_the_embedded_model_exports_the_prompt_it_measured(tmp_path, small_case_file, shared_weights,
                                                                   strategy, options):
    from promptopt.api import optimize
    from promptopt.tasks import bundled_task

    db = f"sqlite:///{tmp_path / 'run.db'}"
    result = optimize(cases=[small_case_file], strategy=strategy, db=db, **options)
    store = Store(db)
    notes = store.steps(result.run_id)[1].details
    assert notes["dspy"]["evaluations"] > 0, notes
    if strategy == "dspy-copro":
        assert notes["dspy"]["optimizer_calls"] > 0
    # the exported prompt, scored afresh on the test split the way the run scores (tool only), gives the report
    exported = export_prompt(store, result.run_id, "md")
    test_ids = [cid for cid, split in store.run_splits(result.run_id).items() if split == "test"]
    fresh = Scorer(ToolRoutingTask(tools=bundled_task("tool-routing").tools, check_arguments=False), shared_weights,
                   ToolCallEvaluator(check_arguments=False), store, result.run_id, Budget())
    candidate_id = store.add_candidate(result.run_id, 99, exported, "rescore")
    assert accuracy(fresh.score(candidate_id, exported, store.cases(test_ids))) == result.best_accuracy
