"""The protocol every model backend implements, and the record each model call leaves behind."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from promptopt.case import ToolCall


@dataclass(frozen=True)
class CallRecord:
    """Accounting for one model call: who asked, tokens, list-price cost, whether the cache answered (then the
    tokens and cost are the original call's, and nothing was spent), how many tries it took, and (when the
    last try failed) the error and HTTP status."""

    role: str
    model: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    cache_hit: bool = False
    cost_usd: float = 0.0
    attempts: int = 1
    error: str = ""
    status: int = 0

    @classmethod
    def from_cache(cls, role: str, model: str, tokens_in: int, tokens_out: int,
                   cost_usd: float = 0.0, paid_by_this_run: bool = False) -> "CallRecord":
        """A call the response cache answered: the original call's tokens and cost, no latency, no attempts. One
        this run's earlier process made and paid for but never recorded (`paid_by_this_run`) is recorded as the
        call it was, not as a cache hit."""
        return cls(role=role, model=model, tokens_in=tokens_in, tokens_out=tokens_out, latency_s=0.0,
                   cache_hit=not paid_by_this_run, cost_usd=cost_usd, attempts=int(paid_by_this_run))


@dataclass(frozen=True)
class Routed:
    """A backend's routing answer for one conversation, with the call that produced it; `error` is set when the
    call failed after its last retry (the answer is then `none` and must not count as the model's choice), and
    `notice` when the backend changed how it asks from this call on (said once, and stored with the run)."""

    call: ToolCall
    record: CallRecord
    error: str = ""
    notice: str = ""


@dataclass(frozen=True)
class Completion:
    """One generated text with its call; `error` is set (and `text` empty) when the call failed for good, and
    `notice` when the backend changed how it asks from this call on (said once)."""

    text: str
    record: CallRecord
    error: str = ""
    notice: str = ""


class ModelBackend(Protocol):
    """A model promptopt can run as task model (routing) or optimizer model (text generation)."""

    name: str

    def route(
        self,
        system_prompt: str,
        tools: Sequence[dict[str, Any]],
        conversations: Sequence[list[dict[str, str]]],
        check_arguments: bool = False,
    ) -> list[Routed]:
        """Choose a tool (or none) for each conversation under `system_prompt`."""
        ...

    def generate(
        self, messages: list[dict[str, str]], temperature: float = 0.0, max_tokens: int = 256, role: str = "optimizer"
    ) -> tuple[str, CallRecord]:
        """One chat completion."""
        ...

    def generate_many(self, requests: Sequence[list[dict[str, str]]], temperature: float = 1.0,
                      max_tokens: int = 512, role: str = "optimizer", first_sample: int = 0) -> list[Completion]:
        """Several completions (concurrently where the backend can); repeated identical requests are distinct
        samples, numbered from `first_sample`. Failures come back as completions with `error`, never as
        exceptions."""
        ...
