"""Prompt markup every layer shares: protected regions (`<!-- protected -->` ... `<!-- /protected -->`), whose text
optimizers must leave byte-identical, and the prompt length cap."""
from __future__ import annotations

import re

PROTECTED = re.compile(r"<!--\s*protected\s*-->.*?<!--\s*/protected\s*-->", re.S)
MARKER = re.compile(r"<!--\s*(/?)protected\s*-->")
DEFAULT_MAX_CHARS = 12000
"""The longest system prompt, seed or candidate: the cap every prompt is held to."""


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
