"""Acceptance: a candidate replaces the incumbent only if it is better on validation by at least a minimum gain
(small validation sets reward luck: candidates that won validation by a case or two then lost on test), breaks no
more than the allowed number of previously-good validation cases, and (when asked) the gain is significant. The
reason given says which rule decided, with the paired p-value either way."""
from __future__ import annotations

from dataclasses import dataclass, field

from promptopt.optimizer.scorer import CaseResult, accuracy
from promptopt.statistics import mcnemar_exact


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
           max_broken: int, alpha: float | None = None, min_gain: float = 0.0) -> Decision:
    """Compare on the same validation cases. Guarded cases are those labelled `good` that the incumbent passes:
    the candidate may fail at most `max_broken` of them; its accuracy must exceed the incumbent's by `min_gain`."""
    ids = sorted(set(incumbent) & set(candidate))
    fixed = [i for i in ids if candidate[i].passed and not incumbent[i].passed]
    broken = [i for i in ids if incumbent[i].passed and not candidate[i].passed]
    guarded_broken = [i for i in broken if i in good_case_ids]
    before = accuracy({i: incumbent[i] for i in ids})
    after = accuracy({i: candidate[i] for i in ids})
    p_value = mcnemar_exact(len(fixed), len(broken))

    def verdict(accepted: bool, reason: str) -> Decision:
        return Decision(accepted, reason, before, after, fixed, broken, guarded_broken, p_value)

    gain = f"{after:.1%} vs {before:.1%}, fixed {len(fixed)}, broken {len(broken)}, p={p_value:.3g}"
    if after <= before:
        return verdict(False, f"not better on validation ({gain})")
    if after - before < min_gain - 1e-9:
        return verdict(False, f"gain below the minimum of {min_gain * 100:.1f} points on validation ({gain})")
    if len(guarded_broken) > max_broken:
        return verdict(False, f"breaks {len(guarded_broken)} previously-good validation cases (allowed {max_broken}; "
                              f"{gain})")
    if alpha is not None and p_value >= alpha:
        return verdict(False, f"gain not significant (p={p_value:.3f}, need < {alpha})")
    why = f"p={p_value:.3g} < {alpha}" if alpha is not None else f"gain >= {min_gain * 100:.1f} points"
    return verdict(True, f"validation {before:.1%} -> {after:.1%}, fixed {len(fixed)}, broken {len(broken)}, "
                         f"p={p_value:.3g} ({why})")
