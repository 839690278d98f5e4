"""Scripted model backends for tests: base classes that own the `ModelBackend` plumbing (signatures, `Routed`,
`Completion`, one `CallRecord` per call), so each test's fake says only what it answers."""
from __future__ import annotations

from typing import Any, Sequence

from promptopt.case import ToolCall
from promptopt.models.base import CallRecord, Completion, Routed


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
