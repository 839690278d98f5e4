"""The line diff from the seed prompt to the winner (difflib), each line marked when it lies in a protected region
(between `<!-- protected -->` and `<!-- /protected -->`, markers included)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from promptopt.markup import PROTECTED


@dataclass(frozen=True)
class DiffLine:
    """One line of the diff: `same`, `removed` (seed only) or `added` (winner only), its line number in the seed
    and in the winner (None where it is not there), and whether it is protected."""

    kind: str
    seed_line: int | None
    winner_line: int | None
    text: str
    protected: bool


def prompt_diff(seed: str, winner: str) -> list[DiffLine]:
    """Every line of both prompts in diff order: unchanged lines once, removed before added."""
    seed_lines, winner_lines = seed.splitlines(), winner.splitlines()
    seed_protected, winner_protected = protected_lines(seed), protected_lines(winner)
    lines: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(None, seed_lines, winner_lines, autojunk=False)
    for tag, s_start, s_end, w_start, w_end in matcher.get_opcodes():
        if tag == "equal":
            lines += [DiffLine("same", s + 1, w + 1, seed_lines[s], s in seed_protected)
                      for s, w in zip(range(s_start, s_end), range(w_start, w_end))]
            continue
        lines += [DiffLine("removed", s + 1, None, seed_lines[s], s in seed_protected) for s in range(s_start, s_end)]
        lines += [DiffLine("added", None, w + 1, winner_lines[w], w in winner_protected)
                  for w in range(w_start, w_end)]
    return lines


def protected_lines(text: str) -> set[int]:
    """Indexes (from 0) of the lines a protected region covers, its marker lines included."""
    covered: set[int] = set()
    for match in PROTECTED.finditer(text):
        first = text.count("\n", 0, match.start())
        last = text.count("\n", 0, match.end())
        covered.update(range(first, last + 1))
    return covered
