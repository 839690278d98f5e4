"""Candidates (a system prompt with its lineage) and the checks every candidate passes before evaluation."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

PROTECTED = re.compile(r"<!--\s*protected\s*-->.*?<!--\s*/protected\s*-->", re.S)
MARKER = re.compile(r"<!--\s*(/?)protected\s*-->")
DEFAULT_MAX_CHARS = 12000


@dataclass
class Candidate:
    """A system prompt proposed by an operator; `id` is set once it is stored."""

    prompt: str
    operator: str
    parent_ids: list[int] = field(default_factory=list)
    rationale: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


def protected_regions(text: str) -> list[str]:
    """The protected blocks of a prompt, markers included, in order. Optimizers must leave them byte-identical."""
    return PROTECTED.findall(text)


def unpaired_marker(text: str) -> tuple[int, str] | None:
    """The line of the first protection marker that does not pair up, and why; None when every opening marker is
    closed before the next one opens. An unpaired marker would otherwise silently protect nothing."""
    opened: int | None = None
    for match in MARKER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        closing = bool(match.group(1))
        if closing and opened is None:
            return line, "closing <!-- /protected --> marker without an opening one before it"
        if not closing and opened is not None:
            return line, f"opening <!-- protected --> marker inside the protected region opened on line {opened}"
        opened = None if closing else line
    if opened is not None:
        return opened, "opening <!-- protected --> marker without a closing <!-- /protected --> after it"
    return None


def strip_markers(text: str) -> str:
    """The prompt with the protection markers removed (their content kept), for plain-text export."""
    return re.sub(r"[ \t]*<!--\s*/?protected\s*-->[ \t]*\n?", "", text)


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
