"""Scripted model backends for tests: base classes that own the `ModelBackend` plumbing (signatures, `Routed`,
`Completion`, one `CallRecord` per call), so each test's fake says only what it answers; the fakes and scripted
endpoint responders that more than one test module uses, with the small shop task they are scripted for. Fakes
live here, not in a test module, so that no test module imports another."""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Sequence

import pytest

from promptopt.api import optimize
from promptopt.case import NO_TOOL, Case, ToolCall
from promptopt.models.base import CallRecord, Completion, Routed
from promptopt.runs.case_import import read_cases
from promptopt.runs.lifecycle import RunInterrupted

TOOL_NAMES = ("get_order_status", "find_stores", "get_promotions", "manage_cart")
"""The shop task the scripted strategy tests (OPRO, APO, BPO, DSPy) optimize: four tools without parameters
(`TOOLS`), a protected region every candidate must keep (`PROTECTED`) and the seed prompt (`SEED`)."""
TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
         for n in TOOL_NAMES]
PROTECTED = "<!-- protected -->\nNo medical advice.\n<!-- /protected -->"
SEED = f"You help shoppers. Tools: {', '.join(TOOL_NAMES)}.\n{PROTECTED}\n"


class FakeModel:
    """What every fake shares: a name, and one `CallRecord` per call with fixed token counts, so the budget,
    the store and the report see each call as they would a real model's."""

    name: str
    latency_s: float = 0.0

    def record(self, role: str, tokens: tuple[int, int]) -> CallRecord:
        tokens_in, tokens_out = tokens
        return CallRecord(role, self.name, tokens_in, tokens_out, self.latency_s)


class FakeRouter(FakeModel):
    """A scripted task model: subclasses implement only `choose`; each conversation is one task call of
    `route_tokens` (in, out)."""

    route_tokens: tuple[int, int] = (10, 1)

    def route(self, system_prompt: str, tools: Sequence[dict[str, Any]],
              conversations: Sequence[list[dict[str, str]]], check_arguments: bool = False) -> list[Routed]:
        """The `ModelBackend.route` call: `choose` for each conversation in order, a `ToolCall` or a tool name."""
        out = []
        for conversation in conversations:
            choice = self.choose(system_prompt, conversation)
            call = choice if isinstance(choice, ToolCall) else ToolCall(choice)
            out.append(Routed(call, self.record("task", self.route_tokens)))
        return out

    def choose(self, system_prompt: str, conversation: list[dict[str, str]]) -> ToolCall | str:
        """The answer to `conversation` under `system_prompt`."""
        raise NotImplementedError


class FakeWriter(FakeModel):
    """A scripted optimizer model: subclasses implement `reply` (or `replies`, for a whole batch); each text is
    one call of `reply_tokens` (in, out) under the caller's role."""

    reply_tokens: tuple[int, int] = (100, 50)

    def generate_many(self, requests: Sequence[list[dict[str, str]]], temperature: float = 1.0,
                      max_tokens: int = 512, role: str = "optimizer", first_sample: int = 0) -> list[Completion]:
        """The `ModelBackend.generate_many` call: the batch's `replies`, each with its call record."""
        return [Completion(text=text, record=self.record(role, self.reply_tokens))
                for text in self.replies(requests, temperature, first_sample)]

    def generate(self, messages: list[dict[str, str]], temperature: float = 0.0, max_tokens: int = 256,
                 role: str = "optimizer") -> tuple[str, CallRecord]:
        """The `ModelBackend.generate` call: a batch of one, sample 0."""
        completion = self.generate_many([messages], temperature, max_tokens, role)[0]
        return completion.text, completion.record

    def replies(self, requests: Sequence[list[dict[str, str]]], temperature: float, first_sample: int) -> list[str]:
        """One `reply` per request, in order, numbering the samples from `first_sample`."""
        return [self.reply(messages, temperature, first_sample + index) for index, messages in enumerate(requests)]

    def reply(self, messages: list[dict[str, str]], temperature: float, sample_index: int) -> str:
        """The text for one request; `sample_index` tells repeated identical requests apart."""
        raise NotImplementedError


def prompt_with(rules: int, variant: int = 0) -> str:
    """A valid prompt that teaches the first `rules` tools (the scripted router rewards exactly that)."""
    lines = [f"{name} handles its own requests." for name in TOOL_NAMES[:rules]]
    return f"Variant {variant}. You help shoppers. Tools: {', '.join(TOOL_NAMES)}.\n" + "\n".join(lines) + \
        f"\n{PROTECTED}\n"


class RuleRouter(FakeRouter):
    """Routes a case right when the prompt has a `TOOL handles` rule for its tool, else says none; records
    every prompt it was asked to run."""

    name = "scripted-task"

    def __init__(self, cases: list[Case]) -> None:
        self.expected = {c.query: c.expected.name for c in cases}
        self.prompts: set[str] = set()

    def choose(self, system_prompt: str, conversation: list[dict[str, str]]) -> str:
        self.prompts.add(system_prompt)
        tool = self.expected[conversation[-1]["content"]]
        return tool if f"{tool} handles" in system_prompt else "none"


class ReplyRouter(FakeRouter):
    """A scripted task model: the expected tool with a made-up `quantity`, and a reply text."""

    name = "scripted"
    route_tokens = (5, 1)

    def __init__(self, cases: Sequence[Case]) -> None:
        self.cases = {c.query: c for c in cases}

    def choose(self, system_prompt: str, conversation: list[dict[str, str]]) -> ToolCall:
        expected = self.cases[conversation[-1]["content"]].expected
        arguments = {"action": "add", "quantity": "two"} if expected.name == "manage_cart" else {}
        return ToolCall(expected.name, arguments, text="好的")


RUNS = {
    "demos": dict(steps=2, n_demos=8, candidates=3),
    "opro": dict(steps=2, candidates=4, train_sample=16),
    "apo": dict(steps=1, beam_width=2, minibatch=16, gradients=2, paraphrases=1, max_successors=3,
                eval_budget=8, pull_size=8),
    "bpo": dict(steps=1, mode="aggressive", samples=2),
    "dspy-copro": dict(steps=1, candidates=2, depth=1, train_sample=12),
    "dspy-bootstrap": dict(steps=1, candidates=2, n_demos=2, labeled_demos=2, train_sample=12),
}
"""Each strategy's options for a short `ScriptedModel` run on the bundled task (the runs of
`tests/golden/reproduction.json`)."""
OPTIONS = dict(seed=3, cache=False, max_broken=1000, alpha=1.0, min_gain=0.03)
"""The run options the reproduction, resume and interruption tests add to `RUNS`: acceptance on a 3-point gain
alone, so the scripted runs keep the paths they were recorded with (candidates accepted and built on)."""


def digest(*parts: str) -> int:
    """A stable hash of `parts`, so `ScriptedModel` answers the same on every run and platform."""
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8], 16)


class ScriptedModel(FakeRouter, FakeWriter):
    """Routes a case right when the prompt shows its query or the rule line its hash picks, half the time when
    the prompt has a demo line of its tool, and a quarter of the time otherwise (else to a hashed tool); writes
    the bundled seed prompt plus a hashed rule line for any generation request."""

    name = "scripted"
    reply_tokens = (20, 10)

    def __init__(self, task) -> None:
        self.answers = {c.query: c.expected.name for path in task.case_files for c in read_cases(path, task.tools)}
        self.names = [t["function"]["name"] for t in task.tools] + ["none"]
        self.seed_prompt = task.seed_prompt

    def choose(self, system_prompt: str, conversation: list[dict[str, str]]) -> str:
        query = conversation[-1]["content"]
        h, expected = digest(system_prompt, query), self.answers[query]
        right = (query in system_prompt or f"Rule {digest(query) % 5}:" in system_prompt
                 or (f"\n{expected}: " in system_prompt and h % 2 == 0) or h % 4 == 0)
        return expected if right else self.names[h % len(self.names)]

    def reply(self, messages: list[dict[str, str]], temperature: float, sample_index: int) -> str:
        h = digest(json.dumps(messages, ensure_ascii=False), str(temperature), str(sample_index))
        return f"{self.seed_prompt.rstrip()}\nRule {h % 5}: read the request carefully."


class Interrupting(ScriptedModel):
    """The scripted model, with Ctrl-C arriving when its `stop_at`-th call is made."""

    def __init__(self, task, stop_at: int) -> None:
        super().__init__(task)
        self.calls, self.stop_at = 0, stop_at

    def count(self, calls: int) -> None:
        self.calls += calls
        if self.calls >= self.stop_at:
            raise KeyboardInterrupt

    def route(self, system_prompt: str, tools: Sequence[dict[str, Any]],
              conversations: Sequence[list[dict[str, str]]], check_arguments: bool = False) -> list[Routed]:
        self.count(len(conversations))
        return super().route(system_prompt, tools, conversations, check_arguments)

    def generate_many(self, requests: Sequence[list[dict[str, str]]], *args, **kwargs) -> list[Completion]:
        self.count(len(requests))
        return super().generate_many(requests, *args, **kwargs)


def interrupted_run(db: str, task, strategy: str, stop_at: int) -> str:
    """Start `strategy`'s scripted run and stop it with Ctrl-C at its `stop_at`-th model call; its run id."""
    model = Interrupting(task, stop_at)
    with pytest.raises(RunInterrupted) as stopped:
        optimize(strategy=strategy, model=model, optimizer_model=model, db=db, **OPTIONS, **RUNS[strategy])
    return stopped.value.run_id


class ExamplesRouter:
    """A scripted chat model: it calls a case's expected tool when the system prompt shows an example call of
    that tool (`{"name": "tool", ...}`), and otherwise answers in plain text (no tool). Tool-less requests get an
    echo."""

    model_name = "scripted"

    def __init__(self, expected: dict[str, str], reject_tools: bool = False) -> None:
        self.expected = expected
        self.reject_tools = reject_tools
        self.seen_auth: list[str] = []

    def respond(self, request: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
        system = "\n".join(m["content"] for m in request["messages"] if m["role"] == "system")
        query = request["messages"][-1]["content"]
        tool = self.expected.get(query, NO_TOOL)
        shown = tool != NO_TOOL and f'"name": "{tool}"' in system
        if not request.get("tools"):
            if "## Tools" in system:  # the text protocol
                return {"role": "assistant", "content": f'{tool if shown else "none"} {{"q": 1}}'}, 30, 5
            return {"role": "assistant", "content": f"echo {query}"}, 10, 3
        if shown:
            call = {"id": "call_1", "type": "function", "function": {"name": tool, "arguments": '{"q": "x"}'}}
            return {"role": "assistant", "content": None, "tool_calls": [call]}, 40, 8
        return {"role": "assistant", "content": "Happy to help!"}, 40, 4


class Echo:
    """A chat responder for the HTTP server's own tests: answers every request with its last message, after
    `seconds`; counts the requests it worked on."""

    model_name = "scripted"

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.calls = 0

    def respond(self, request):
        self.calls += 1
        time.sleep(self.seconds)
        return {"role": "assistant", "content": str(request["messages"][-1].get("content"))}, 3, 1
