"""OPRO's mechanics with a scripted optimizer model and a scripted task model, on a real SQLite store."""
from __future__ import annotations

import re

from promptopt.evaluators.tool_call import ToolCallEvaluator
from promptopt.optimizer.loop import RunConfig, run_optimization
from promptopt.optimizer.prompt_text import first_tagged as extract_prompt
from promptopt.optimizer.strategies.opro import OproStrategy
from promptopt.tasks.tool_routing import ToolRoutingTask
from tests.fakes import PROTECTED, SEED, TOOLS, FakeWriter, RuleRouter, prompt_with

PAIR = re.compile(r"text:\n(.*?)\nscore:\n(\S+)", re.S)


class ScriptedOptimizer(FakeWriter):
    """Replies from a script, one list of replies per step; records the meta-prompts it was shown."""

    name = "scripted-optimizer"

    def __init__(self, script: list[list[str]]) -> None:
        self.script = script
        self.meta_prompts: list[str] = []

    def replies(self, requests, temperature, first_sample):
        self.meta_prompts.append(requests[0][0]["content"])
        replies = self.script[len(self.meta_prompts) - 1]
        assert len(replies) == len(requests)
        return replies


def wrap(prompt: str) -> str:
    return f"Here is my prompt:\n<PROMPT>{prompt}</PROMPT>\nHope it helps."


def test_opro_meta_prompt_history_filtering_and_winner(store, scripted_cases):
    invalid = SEED.replace("No medical advice.", "Anything goes.")
    dropped_tool = prompt_with(2).replace("manage_cart", "the cart")
    script = [
        # step 1: a duplicate pair, a copy of the seed, a copy with its protected region edited (the engine puts
        # the region back, so it is the seed again), a dropped tool, 3 new, and a reply without tags
        [wrap(prompt_with(1)), wrap(prompt_with(1)), wrap(SEED), wrap(invalid), wrap(dropped_tool),
         wrap(prompt_with(2)), wrap(prompt_with(0, 1)), "no tags at all, just prose"],
        # steps 2 to 5: eight new prompts each, getting better
        [wrap(prompt_with(2, v)) for v in range(2, 10)],
        [wrap(prompt_with(3, v)) for v in range(10, 18)],
        [wrap(prompt_with(3, v)) for v in range(18, 26)],
        [wrap(prompt_with(4, v)) for v in range(26, 34)],
    ]
    optimizer = ScriptedOptimizer(script)
    router = RuleRouter(scripted_cases)
    strategy = OproStrategy(train_sample=30)
    report = run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, scripted_cases, router, strategy,
                              ToolCallEvaluator(), RunConfig(steps=5, max_broken=0), optimizer_model=optimizer)

    # meta-prompts: at most 20 pairs, sorted ascending, integer scores in 0..100, exemplars shown
    assert len(optimizer.meta_prompts) == 5
    for meta in optimizer.meta_prompts:
        pairs = PAIR.findall(meta)
        scores = [int(score) for _, score in pairs]
        assert 1 <= len(pairs) <= 20
        assert scores == sorted(scores) and all(0 <= s <= 100 for s in scores)
        assert meta.count("Request: request ") == 3 and "Right tool: " in meta
        assert "<PROMPT>" in meta and "a protected section of 1 line(s)" in meta.lower()
        assert "No medical advice" not in meta and "protected -->" not in meta  # never shown, never copied
    assert [len(PAIR.findall(meta)) for meta in optimizer.meta_prompts] == [1, 4, 12, 20, 20]  # 28 known by step 5
    best_shown = PAIR.findall(optimizer.meta_prompts[4])[-1]
    assert best_shown[1] == "80" and "manage_cart handles" not in best_shown[0]  # the best so far comes last

    # duplicates and invalid candidates never reach the task model
    assert invalid not in router.prompts and dropped_tool not in router.prompts
    stored = store.candidates(report["run_id"])
    assert sum(c.status == "invalid" for c in stored) == 2
    assert all(c.prompt.endswith(f"{PROTECTED}\n") for c in stored)  # spliced back byte for byte
    assert sum(c.prompt.strip() == prompt_with(1).strip() for c in stored) == 1
    assert not any(c.prompt == SEED and c.operator == "opro" for c in stored)

    # the best-scoring prompt wins, and each step keeps its meta-prompt and what became of the samples
    winner = store.candidate(report["winner"]["candidate_id"])
    assert winner.prompt.strip() == prompt_with(4, 26).strip()
    assert report["winner"]["test_accuracy"] > report["seed"]["test_accuracy"]
    steps = store.steps(report["run_id"])
    assert [s.details.get("meta_prompt") for s in steps[1:]] == optimizer.meta_prompts
    assert steps[1].details["samples"] == {"samples": 8, "failed": 0, "duplicates": 3, "invalid": 2, "scored": 3,
                                           "invalid_reasons": {"no longer names tool(s)": 2}}
    assert report["model_calls"] >= 5 * 8


def test_extract_prompt():
    assert extract_prompt("blah <PROMPT> Be kind. </PROMPT> more") == "Be kind."
    assert extract_prompt("<PROMPT>unterminated text") == "unterminated text"
    assert extract_prompt("  plain reply ") == "plain reply"


def test_chinese_meta_prompt(store, scripted_cases):
    optimizer = ScriptedOptimizer([[wrap(prompt_with(1))]])
    run_optimization(store, ToolRoutingTask(tools=TOOLS), SEED, scripted_cases, RuleRouter(scripted_cases),
                     OproStrategy(candidates=1, language="zh"), ToolCallEvaluator(), RunConfig(steps=1),
                     optimizer_model=optimizer)
    meta = optimizer.meta_prompts[0]
    assert "系统提示词" in meta and "得分：" in meta and "正确工具：" in meta
