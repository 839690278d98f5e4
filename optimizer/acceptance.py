"""Acceptance: a candidate replaces the incumbent only when the paired validation outcomes show it better with the
stated confidence (exact one-sided McNemar p < alpha), so the evidence needed scales with what validation holds:
one case in 24 never suffices, 15 fixed against 6 broken in 75 does. The regression guard weighs what a candidate
breaks against the good cases there are (a share, `max_broken_share`), unless the user sets an exact count
(`max_broken`, 0 for none). A minimum gain in points stays available. The reason given says which rule decided,
with the evidence either way."""
from __future__ import annotations

from dataclasses import dataclass, field

from promptopt.optimizer.scorer import CaseResult, accuracy
from promptopt.statistics import mcnemar_one_sided


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str
    incumbent_accuracy: float
    candidate_accuracy: float
    fixed: list[int] = field(default_factory=list)
    broken: list[int] = field(default_factory=list)
    guarded_broken: list[int] = field(default_factory=list)
    p_value: float = 1.0
    """One-sided exact McNemar p that the candidate is better on validation."""


def decide(incumbent: dict[int, CaseResult], candidate: dict[int, CaseResult], good_case_ids: set[int],
           max_broken: int | None = None, alpha: float | None = 0.05, min_gain: float = 0.0,
           max_broken_share: float = 0.1) -> Decision:
    """Compare on the same validation cases. Guarded cases are those labelled `good` that the incumbent passes; the
    candidate may break at most `max_broken` of them, or, when that is None, at most `max_broken_share` of the good
    validation cases. It must gain at least `min_gain` and, unless `alpha` is None (runs stored before the rule),
    be better by the one-sided exact McNemar test at p < `alpha`."""
    ids = sorted(set(incumbent) & set(candidate))
    fixed = [i for i in ids if candidate[i].passed and not incumbent[i].passed]
    broken = [i for i in ids if incumbent[i].passed and not candidate[i].passed]
    guarded_broken = [i for i in broken if i in good_case_ids]
    good = sum(1 for i in ids if i in good_case_ids)
    before = accuracy({i: incumbent[i] for i in ids})
    after = accuracy({i: candidate[i] for i in ids})
    p_value = mcnemar_one_sided(len(fixed), len(broken))

    def verdict(accepted: bool, reason: str) -> Decision:
        return Decision(accepted, reason, before, after, fixed, broken, guarded_broken, p_value)

    evidence = (f"{after:.1%} vs {before:.1%} on {len(ids)} validation cases, fixed {len(fixed)}, broken "
                f"{len(broken)}, one-sided McNemar p={p_value:.3g}")
    if after <= before:
        return verdict(False, f"not better on validation ({evidence})")
    if after - before < min_gain - 1e-9:
        return verdict(False, f"gain below the minimum of {min_gain * 100:.1f} points on validation ({evidence})")
    if max_broken is not None and len(guarded_broken) > max_broken:
        return verdict(False, f"breaks {len(guarded_broken)} previously-good validation cases (allowed "
                              f"{max_broken}; {evidence})")
    if max_broken is None and good and len(guarded_broken) / good > max_broken_share + 1e-9:
        return verdict(False, f"breaks {len(guarded_broken)} of {good} previously-good validation cases "
                              f"({len(guarded_broken) / good:.0%}, more than the {max_broken_share:.0%} allowed; "
                              f"{evidence})")
    if alpha is not None and p_value >= alpha:
        return verdict(False, f"not enough evidence that it is better: {evidence}, needs p < {alpha:g}")
    guard = (f"{len(guarded_broken)} of {good} good cases broken" if good else "no good cases on validation")
    why = f"p < {alpha:g}" if alpha is not None else f"gain >= {min_gain * 100:.1f} points"
    return verdict(True, f"validation {before:.1%} -> {after:.1%}, fixed {len(fixed)}, broken {len(broken)} "
                         f"({guard}), one-sided McNemar p={p_value:.3g} ({why})")
