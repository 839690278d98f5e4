"""Confidence intervals and paired tests for accuracies measured on the same cases."""
from __future__ import annotations

import math


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when there is no data."""
    if total == 0:
        return (0.0, 1.0)
    from scipy.stats import norm  # here, not at import: scipy.stats takes seconds to load

    z = norm.ppf(0.5 + confidence / 2)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (cases fixed vs. cases broken)."""
    if fixed + broken == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(fixed, fixed + broken, 0.5).pvalue)


def mcnemar_one_sided(fixed: int, broken: int) -> float:
    """One-sided exact McNemar p-value that the second of two paired prompts is better: the chance of at least
    `fixed` of the discordant cases going its way if each went either way with even odds."""
    if fixed + broken == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(fixed, fixed + broken, 0.5, alternative="greater").pvalue)


def smallest_significant_gain(cases: int, alpha: float = 0.05) -> float | None:
    """The smallest accuracy gain a paired comparison on `cases` cases could call significant (two-sided exact
    McNemar p < `alpha`), reached only when nothing is broken: k fixed cases give p = 2 * 0.5**k. None when even
    every case fixed would not do."""
    for fixed in range(1, cases + 1):
        if mcnemar_exact(fixed, 0) < alpha:
            return fixed / cases
    return None
