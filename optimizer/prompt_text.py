"""Prompt text every strategy works with: tagged replies, the normal form that spots duplicates, and few-shot demo
lines. Strategies share these instead of importing each other."""
from __future__ import annotations

import json
import re
from typing import Sequence

from promptopt.case import NO_TOOL, Case
from promptopt.chat_messages import message_text

PROMPT_TAGS = ("<PROMPT>", "</PROMPT>")
EXAMPLES_HEADER = "## Examples"
NO_TOOL_REPLY = "(answers directly, without calling a tool)"


def normalized(prompt: str) -> str:
    """Whitespace-insensitive form used to spot duplicates."""
    return " ".join(prompt.split())


def first_tagged(reply: str, tags: tuple[str, str] = PROMPT_TAGS) -> str:
    """The text between the first opening tag and the following closing one (or the end); without tags, the
    whole reply."""
    opening, closing = (re.escape(tag) for tag in tags)
    match = re.search(opening + r"(.*?)(?:" + closing + r"|$)", reply, re.S)
    return (match.group(1) if match else reply).strip()


def tagged_pieces(text: str, tags: tuple[str, str]) -> list[str]:
    """Every non-empty piece between the tags (an unterminated last piece counts); none: the whole text."""
    opening, closing = (re.escape(tag) for tag in tags)
    pieces = re.findall(opening + r"(.*?)(?:" + closing + r"|$)", text, re.S)
    found = [p.strip() for p in pieces if p.strip()]
    return found or ([text.strip()] if text.strip() else [])


DEMO_CONTEXT_MESSAGES = 2
DEMO_TURN_CHARS = 120


def render_demo(case: Case) -> str:
    """One example as the exchange it shows: the turns just before the request (the last two, each clipped), the
    user's request, then the assistant's reply as the tool call it makes (`{"name": ..., "arguments": ...}`, the
    JSON a tool-calling model writes) or a note that it answers directly. A model copies the format of its
    examples: `tool: request` lines moved the default embedded model by half as much as these."""
    lines = [f"{turn['role'].capitalize()}: {_clipped(message_text(turn))}"
             for turn in case.context[-DEMO_CONTEXT_MESSAGES:] if turn.get("role") in ("user", "assistant")]
    if case.expected.name == NO_TOOL:
        reply = NO_TOOL_REPLY
    else:
        reply = json.dumps({"name": case.expected.name, "arguments": dict(case.expected.arguments)}, ensure_ascii=False)
    return "\n".join([*lines, f"User: {' '.join(case.query.split())}", f"Assistant: {reply}"])


def _clipped(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= DEMO_TURN_CHARS else flat[:DEMO_TURN_CHARS - 1].rstrip() + "…"


def render_demos(base_prompt: str, demos: Sequence[Case]) -> str:
    """The base prompt with an examples section appended (a blank line between examples once any shows earlier
    turns, so each conversation reads as one)."""
    if not demos:
        return base_prompt
    separator = "\n\n" if any(c.context for c in demos) else "\n"
    body = separator.join(render_demo(c) for c in demos)
    return f"{base_prompt.rstrip()}\n\n{EXAMPLES_HEADER}\n{body}\n"
