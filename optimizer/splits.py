"""Seeded train/validation/test splits, stratified by expected tool so every split sees every tool."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from promptopt.case import Case

SPLITS = ("train", "val", "test")


def split_cases(cases: Sequence[Case], seed: int, fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
                ) -> dict[int, str]:
    """Assign each case id to train/val/test; within each expected tool the shares follow `fractions`."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ValueError("split fractions must be positive and sum to 1")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for case in cases:
        groups[case.expected.name].append(case.id)
    assignment: dict[int, str] = {}
    carry = np.zeros(3)
    for tool in sorted(groups):
        ids = sorted(set(groups[tool]))
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
