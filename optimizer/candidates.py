"""Candidates (a system prompt with its lineage) and the checks every candidate passes before evaluation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from promptopt.markup import DEFAULT_MAX_CHARS, protected_regions, unpaired_marker


@dataclass
class Candidate:
    """A system prompt proposed by an operator; `id` is set once it is stored."""

    prompt: str
    operator: str
    parent_ids: list[int] = field(default_factory=list)
    rationale: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


def validation_problem(prompt: str, seed_prompt: str, tool_names: Sequence[str],
                       max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """Why `prompt` may not be evaluated, or None: protected regions edited or their markers unpaired, a tool the
    seed names dropped, empty, or longer than `max_chars`."""
    if not prompt.strip():
        return "empty prompt"
    if len(prompt) > max_chars:
        return f"too long: {len(prompt)} characters, the cap is {max_chars}"
    unpaired = unpaired_marker(prompt)
    if unpaired:
        return f"protected region markers do not pair up: line {unpaired[0]}: {unpaired[1]}"
    if protected_regions(prompt) != protected_regions(seed_prompt):
        return "a protected region was edited, removed or added"
    dropped = [name for name in tool_names if name in seed_prompt and name not in prompt]
    if dropped:
        return f"no longer names tool(s): {', '.join(dropped)}"
    return None
