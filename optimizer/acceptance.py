"""Acceptance: a candidate replaces the incumbent only if it is better on validation, breaks no more than the
allowed number of previously-good validation cases, and (when asked) the gain is significant."""
from __future__ import annotations

from dataclasses import dataclass, field

from promptopt.optimizer.scorer import CaseResult, accuracy
from promptopt.optimizer.statistics import mcnemar_exact


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


def decide(incumbent: dict[int, CaseResult], candidate: dict[int, CaseResult], good_case_ids: set[int],
           max_broken: int, alpha: float | None = None) -> Decision:
    """Compare on the same validation cases. Guarded cases are those labelled `good` that the incumbent passes:
    the candidate may fail at most `max_broken` of them."""
    ids = sorted(set(incumbent) & set(candidate))
    fixed = [i for i in ids if candidate[i].passed and not incumbent[i].passed]
    broken = [i for i in ids if incumbent[i].passed and not candidate[i].passed]
    guarded_broken = [i for i in broken if i in good_case_ids]
    before = accuracy({i: incumbent[i] for i in ids})
    after = accuracy({i: candidate[i] for i in ids})
    p_value = mcnemar_exact(len(fixed), len(broken))

    def verdict(accepted: bool, reason: str) -> Decision:
        return Decision(accepted, reason, before, after, fixed, broken, guarded_broken, p_value)

    if after <= before:
        return verdict(False, f"not better on validation ({after:.1%} vs {before:.1%})")
    if len(guarded_broken) > max_broken:
        return verdict(False, f"breaks {len(guarded_broken)} previously-good validation cases (allowed {max_broken})")
    if alpha is not None and p_value >= alpha:
        return verdict(False, f"gain not significant (p={p_value:.3f}, need < {alpha})")
    return verdict(True, f"validation {before:.1%} -> {after:.1%}, fixed {len(fixed)}, broken {len(broken)}")
