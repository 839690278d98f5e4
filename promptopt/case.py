"""The domain records every part of promptopt shares: a recorded interaction (`Case`) and a tool call."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from promptopt.chat_messages import hash_form, message_text, normalize_context

NO_TOOL = "none"
"""The routing choice that means "answer without calling a tool"."""

LABELS = ("bad", "good")


@dataclass(frozen=True)
class ToolCall:
    """One routing decision: a tool name (or `NO_TOOL`), its arguments, and the assistant's reply text (if any)."""

    name: str = NO_TOOL
    arguments: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    @property
    def is_none(self) -> bool:
        return self.name == NO_TOOL

    def to_json(self) -> dict[str, Any]:
        """`{"tool", "arguments"}`, plus `"text"` only when there is reply text (so older hashes stay valid)."""
        data: dict[str, Any] = {"tool": None if self.is_none else self.name, "arguments": dict(self.arguments)}
        if self.text:
            data["text"] = self.text
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "ToolCall":
        if not data:
            return cls()
        return cls(name=data.get("tool") or NO_TOOL, arguments=dict(data.get("arguments") or {}),
                   text=data.get("text") or "")


def choice_text(call: ToolCall, error: str = "") -> str:
    """A routing choice as the report shows it: the tool, `no tool`, or the failed call."""
    if error:
        return f"no answer (model call failed: {error})"
    return "no tool" if call.is_none else call.name


@dataclass(frozen=True)
class Case:
    """One recorded interaction: what the user said, what should have happened and what did happen.

    `label` is `bad` when production got it wrong and `good` when it got it right and must stay right. `context` is
    kept as OpenAI chat messages an endpoint accepts (`chat_messages.normalize_context`), whatever form it came in.
    """

    query: str
    expected: ToolCall
    context: tuple[dict[str, Any], ...] = ()
    actual: ToolCall | None = None
    label: str = "bad"
    tags: tuple[str, ...] = ()
    source: str = ""
    id: int | None = None

    def __post_init__(self) -> None:
        """Keep the context in the one form every endpoint accepts, however the case was built or stored."""
        object.__setattr__(self, "context", normalize_context(self.context))

    def messages(self) -> list[dict[str, Any]]:
        """The conversation as chat messages: the context, then the query as the last user turn."""
        return [*map(dict, self.context), {"role": "user", "content": self.query}]

    def transcript(self) -> str:
        """The conversation as `role: text` lines ending with the query, as optimizer models read cases."""
        lines = [f"{m['role']}: {message_text(m)}" for m in self.context]
        return "\n".join([*lines, f"user: {self.query}"])

    def content_hash(self) -> str:
        """Hash of what makes a case the same case, used to dedupe re-imports: the context as `hash_form` sees it,
        so a case stored before contexts were normalised and the same case imported now are one case."""
        payload = json.dumps(
            {"query": self.query, "context": hash_form(self.context), "expected": self.expected.to_json()},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()
