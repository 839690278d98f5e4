"""Text evaluators on the assistant's reply (`ToolCall.text`): exact match, contains, regex.

The reference is the case's `expected.text`, or the evaluator's `pattern` when one is given (for every case).
A case with neither has nothing to check and passes, as arguments a case does not expect are not checked.
"""
from __future__ import annotations

import re
import unicodedata

from promptopt.case import Case, ToolCall
from promptopt.evaluators.base import Score

MODES = ("exact", "contains", "regex")


def normalise_text(text: str) -> str:
    """NFKC-normalised, case-folded, whitespace collapsed: how exact and contains compare text."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class TextEvaluator:
    """Scores 1 when the reply equals (`exact`), contains (`contains`) or matches (`regex`, `re.search`) the
    reference, else 0."""

    def __init__(self, mode: str = "exact", pattern: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"text mode must be one of {', '.join(MODES)}")
        self.mode = self.name = mode
        self.pattern = pattern
        if mode == "regex" and pattern is not None:
            re.compile(pattern)

    def __call__(self, case: Case, output: ToolCall) -> Score:
        reference = self.pattern if self.pattern is not None else case.expected.text
        if not reference:
            return Score(1.0, f"{self.mode}: no expected text to check")
        reply = output.text
        shown = reply if len(reply) <= 80 else reply[:77] + "..."
        if self.mode == "regex":
            try:
                found = re.search(reference, reply) is not None
            except re.error as error:
                return Score(0.0, f"regex: invalid pattern {reference!r}: {error}")
            return Score(1.0 if found else 0.0,
                         f"regex: reply matches {reference!r}" if found else f"regex: {shown!r} does not match {reference!r}")
        if self.mode == "contains":
            found = normalise_text(reference) in normalise_text(reply)
            return Score(1.0 if found else 0.0,
                         f"contains: reply contains {reference!r}" if found else f"contains: {shown!r} lacks {reference!r}")
        same = normalise_text(reference) == normalise_text(reply)
        return Score(1.0 if same else 0.0, "exact: reply matches" if same else f"exact: got {shown!r}, expected {reference!r}")
