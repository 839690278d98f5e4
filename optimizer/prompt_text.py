"""Prompt text every strategy works with: tagged replies, the normal form that spots duplicates, and few-shot demo
lines. Strategies share these instead of importing each other."""
from __future__ import annotations

import re
from typing import Sequence

from promptopt.case import Case

PROMPT_TAGS = ("<PROMPT>", "</PROMPT>")
EXAMPLES_HEADER = "## Examples"


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


def render_demo(case: Case) -> str:
    """One example as `tool: request`, a line a capable model reads as a labelled example and the embedded
    model's channel scoring (`"{choice}: {message}"`) reads the same way."""
    return f"{case.expected.name}: {' '.join(case.query.split())}"


def render_demos(base_prompt: str, demos: Sequence[Case]) -> str:
    """The base prompt with an examples section appended."""
    if not demos:
        return base_prompt
    body = "\n".join(render_demo(c) for c in demos)
    return f"{base_prompt.rstrip()}\n\n{EXAMPLES_HEADER}\n{body}\n"
