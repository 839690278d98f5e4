"""APO's pipeline with a scripted optimizer model and a scripted task model, on a real SQLite store."""
from __future__ import annotations

import re

import pytest

from promptopt.evaluators.tool_call import ToolCallEvaluator
from promptopt.optimizer.loop import RunConfig, run_optimization
from promptopt.optimizer.strategies.apo import ApoStrategy, between_tags
from promptopt.tasks.tool_routing import ToolRoutingTask
from tests.fakes import PROTECTED, SEED, TOOLS, FakeWriter, RuleRouter


class GradientScript(FakeWriter):
    """Gradients name the right tool of the first failure shown; edits add a rule for the tool their gradient
    names; paraphrases append a marker. Checks that gradient calls only ever see failures."""

    name = "scripted-optimizer"

    def __init__(self) -> None:
        self.calls = {"gradient": 0, "edit": 0, "paraphrase": 0}
        self.shown_pairs: list[tuple[str, str]] = []

    def reply(self, messages, temperature, sample_index):
        text = messages[0]["content"]
        assert "No medical advice" not in text and "protected -->" not in text  # the protected text never shown
        if "Give one reason" in text:
            self.calls["gradient"] += 1
            pairs = re.findall(r"chosen: (\S+); right: (\S+)", text)
            self.shown_pairs.extend(pairs)
            return f"<START>missing rule for {pairs[0][1]}<END>"
        if "The reason is:" in text:
            self.calls["edit"] += 1
            prompt = re.search(r'The instructions of my current prompt are:\n"(.*?)"\n\n', text, re.S).group(1)
            tool = re.search(r"missing rule for (\S+)", text).group(1)
            return f"<START>{prompt.rstrip()}\n{tool} handles its own requests.\n<END>"
        self.calls["paraphrase"] += 1
        prompt = re.search(r"Instructions:\n(.*)\n\nWrap the variation", text, re.S).group(1)
        return f"<START>{prompt}\n(variation {self.calls['paraphrase']})<END>"


def test_apo_pipeline(store, scripted_cases):
    optimizer = GradientScript()
    router = RuleRouter(scripted_cases)
    strategy = ApoStrategy(minibatch=24, eval_budget=40, pull_size=8, beam_width=3, max_successors=4)
    report = run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, scripted_cases, router, strategy,
                              ToolCallEvaluator(), RunConfig(steps=3, max_broken=0), optimizer_model=optimizer)
    run_id = report["run_id"]

    # gradients see only failing cases
    assert optimizer.calls["gradient"] > 0 and optimizer.shown_pairs
    assert all(chosen != right for chosen, right in optimizer.shown_pairs)

    # edits are derived from gradients, paraphrases from edits, and lineage is stored
    successors = [c for c in store.candidates(run_id) if c.operator.startswith("apo")]
    edits = [c for c in successors if c.operator == "apo-edit"]
    assert edits and all(c.details["gradient"] == c.rationale for c in successors)
    for edit in edits:
        tool = re.search(r"missing rule for (\S+)", edit.details["gradient"]).group(1)
        assert f"{tool} handles" in edit.prompt and edit.parent_ids == [edit.details["parent"]]
        assert edit.details["error_case_ids"]
    assert any(c.operator == "apo-paraphrase" and "(variation" in c.prompt for c in successors)
    assert all(c.prompt.endswith(f"{PROTECTED}\n") for c in successors)  # spliced back byte for byte

    # at most max_successors per parent per round; beam width and evaluation budget respected
    per_parent: dict[tuple[int, int], int] = {}
    for c in successors:
        key = (c.step, c.details["parent"])
        per_parent[key] = per_parent.get(key, 0) + 1
    assert max(per_parent.values()) <= 4
    for step in store.steps(run_id)[1:]:
        bandit = step.details["bandit"]
        assert sum(bandit["pulls"]) <= 40
        assert len(bandit["beam"]) <= 3 and set(bandit["beam"]) <= set(bandit["arms"])
        assert step.details["apo"]["parents"] <= 3
    assert len(strategy.beam) <= 3

    # and the search works: the winner teaches the router more tools than the seed
    assert report["winner"]["test_accuracy"] > report["seed"]["test_accuracy"]


def test_eval_budget_must_cover_every_arm_once():
    with pytest.raises(ValueError, match="evaluation budget"):
        ApoStrategy(beam_width=4, max_successors=8, eval_budget=20)


def test_between_tags():
    assert between_tags("x <START>a<END> y <START>b<END>") == ["a", "b"]
    assert between_tags("<START>open ended") == ["open ended"]
    assert between_tags("no tags") == ["no tags"]
    assert between_tags("  ") == []
