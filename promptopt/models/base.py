"""The protocol every model backend implements, and the record each model call leaves behind."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from promptopt.case import ToolCall


@dataclass(frozen=True)
class CallRecord:
    """Accounting for one model call: who asked, what it cost, whether the cache answered."""

    role: str
    model: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    cache_hit: bool = False
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Routed:
    """A backend's routing answer for one conversation, with the call that produced it."""

    call: ToolCall
    record: CallRecord


class ModelBackend(Protocol):
    """A model promptopt can run as task model (routing) or optimizer model (text generation)."""

    name: str

    def route(
        self,
        system_prompt: str,
        tools: Sequence[dict[str, Any]],
        conversations: Sequence[list[dict[str, str]]],
        fill_arguments: bool = False,
    ) -> list[Routed]:
        """Choose a tool (or none) for each conversation under `system_prompt`."""
        ...

    def generate(
        self, messages: list[dict[str, str]], temperature: float = 0.0, max_tokens: int = 256, role: str = "optimizer"
    ) -> tuple[str, CallRecord]:
        """One chat completion."""
        ...
