"""Seeded train/validation/test splits, and samples within a split, stratified by expected tool so every split
and every sample sees every tool."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from promptopt.case import Case

SPLITS = ("train", "val", "test")


def split_cases(cases: Sequence[Case], seed: int, fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
                ) -> dict[int, str]:
    """Assign each case id to train/val/test; within each expected tool the shares follow `fractions`. The split
    is a function of the cases' contents and `seed` only (cases are ordered by content hash before the seeded
    shuffle, never by store id), so the same cases and seed give the same split in any store."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ValueError("split fractions must be positive and sum to 1")
    rng = np.random.default_rng(seed)
    groups: dict[str, dict[int, str]] = defaultdict(dict)
    for case in cases:
        groups[case.expected.name][case.id] = case.content_hash()
    assignment: dict[int, str] = {}
    carry = np.zeros(3)
    for tool in sorted(groups):
        digests = groups[tool]
        ids = sorted(digests, key=lambda case_id: digests[case_id])
        rng.shuffle(ids)
        # largest-remainder rounding, carried across tools so small groups don't all round the same way
        exact = np.array(fractions) * len(ids) + carry
        counts = np.floor(exact).astype(int)
        for index in np.argsort(-(exact - counts))[: len(ids) - counts.sum()]:
            counts[index] += 1
        carry = exact - counts
        start = 0
        for split, count in zip(SPLITS, counts):
            for case_id in ids[start:start + count]:
                assignment[case_id] = split
            start += count
    return assignment


def stratified_sample(cases: Sequence[Case], size: int, rng: np.random.Generator) -> list[Case]:
    """About `size` of `cases`, each expected tool in proportion but at least once, in their given order (all of
    them when there are no more than `size`)."""
    if len(cases) <= size:
        return list(cases)
    groups: dict[str, list[int]] = defaultdict(list)
    for index, case in enumerate(cases):
        groups[case.expected.name].append(index)
    share = size / len(cases)
    chosen: list[int] = []
    for tool in sorted(groups):
        members = groups[tool]
        count = min(len(members), max(1, int(round(share * len(members)))))
        chosen.extend(members[int(i)] for i in rng.choice(len(members), size=count, replace=False))
    return [cases[i] for i in sorted(chosen)]


class TooFewCases(ValueError):
    """Too few cases for a run: some split would be empty."""


def require_every_split(assignment: dict[int, str]) -> None:
    """Refuse a split that leaves train, validation or test empty (too few cases to search, accept and report)."""
    sizes = {name: sum(1 for split in assignment.values() if split == name) for name in SPLITS}
    empty = [name for name, size in sizes.items() if not size]
    if empty:
        raise TooFewCases(f"{len(assignment)} case(s) leave the {' and '.join(empty)} split(s) empty: a run needs "
                         "at least one case in each of train, validation and test (4 or more cases)")
