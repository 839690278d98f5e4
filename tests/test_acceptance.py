"""Acceptance scales with the evidence: a case or two on a small validation set never replaces the incumbent, a
gain that paired outcomes show with confidence does, and the regression guard weighs what a candidate breaks against
the good cases there are unless the user sets an exact count."""
from __future__ import annotations

from promptopt.case import ToolCall
from promptopt.optimizer.acceptance import decide
from promptopt.optimizer.loop import RunConfig
from promptopt.optimizer.scorer import CaseResult
from promptopt.statistics import smallest_significant_gain


def results(passed: dict[int, bool]) -> dict[int, CaseResult]:
    return {i: CaseResult(i, ToolCall("x"), float(ok), ok, "") for i, ok in passed.items()}


def paired(cases: int, both: int, fixed: int, broken: int) -> tuple[dict, dict]:
    """Incumbent and candidate outcomes on `cases` cases: `both` right under both, then `fixed` right only under
    the candidate, then `broken` right only under the incumbent; the rest wrong under both."""
    incumbent, candidate = {}, {}
    for i in range(cases):
        incumbent[i] = i < both or both + fixed <= i < both + fixed + broken
        candidate[i] = i < both + fixed
    return results(incumbent), results(candidate)


def defaults(incumbent, candidate, good, **given):
    config = RunConfig(**given)
    return decide(incumbent, candidate, good, config.max_broken, config.alpha, config.min_gain,
                  config.max_broken_share)


def test_one_case_better_on_24_validation_cases_is_not_accepted_by_default():
    incumbent, candidate = paired(24, both=11, fixed=1, broken=0)
    decision = defaults(incumbent, candidate, set())
    assert not decision.accepted
    assert "not enough evidence" in decision.reason and "p=0.5" in decision.reason


def test_four_fixed_one_broken_of_24_is_not_enough_either():
    incumbent, candidate = paired(24, both=10, fixed=4, broken=1)
    decision = defaults(incumbent, candidate, set())
    assert not decision.accepted and abs(decision.p_value - 0.1875) < 1e-9


def test_twelve_points_on_75_with_3_of_40_good_broken_is_accepted_by_default_and_refused_with_max_broken_2():
    incumbent, candidate = paired(75, both=44, fixed=15, broken=6)
    broken_ids = [i for i in range(75) if incumbent[i].passed and not candidate[i].passed]
    good = set(broken_ids[:3]) | set(range(37))  # 40 good cases, 3 of them broken
    assert len(good) == 40
    accepted = defaults(incumbent, candidate, good)
    assert accepted.accepted, accepted.reason
    assert candidate_gain(incumbent, candidate) >= 0.12 - 1e-9
    assert "3 of 40 good cases broken" in accepted.reason and "p=0.0392" in accepted.reason
    refused = defaults(incumbent, candidate, good, max_broken=2)
    assert not refused.accepted and "breaks 3 previously-good validation cases (allowed 2" in refused.reason


def test_the_share_guard_refuses_a_candidate_that_breaks_too_many_good_cases_however_much_it_fixes():
    incumbent, candidate = paired(100, both=40, fixed=30, broken=5)
    broken_ids = [i for i in range(100) if incumbent[i].passed and not candidate[i].passed]
    good = set(broken_ids) | set(range(35))  # 5 of 40 good broken: 12.5 %
    decision = defaults(incumbent, candidate, good)
    assert not decision.accepted and "5 of 40 previously-good" in decision.reason
    assert defaults(incumbent, candidate, good, max_broken_share=0.15).accepted


def test_a_strict_policy_is_honoured_exactly():
    incumbent, candidate = paired(100, both=40, fixed=30, broken=1)
    broken_ids = [i for i in range(100) if incumbent[i].passed and not candidate[i].passed]
    assert not defaults(incumbent, candidate, set(broken_ids), max_broken=0).accepted
    assert defaults(incumbent, candidate, set(), max_broken=0).accepted


def test_runs_stored_before_the_rule_resume_with_the_rule_they_had():
    stored = {"max_broken": 2, "alpha": None, "min_gain": 0.03}
    config = RunConfig.from_json(stored)
    incumbent, candidate = paired(24, both=11, fixed=1, broken=0)
    assert defaults(incumbent, candidate, set(), **{k: getattr(config, k) for k in stored}).accepted


def test_the_smallest_significant_gain_shrinks_with_the_test_split():
    assert smallest_significant_gain(24) == 6 / 24
    assert smallest_significant_gain(100) == 6 / 100
    assert smallest_significant_gain(5) is None


def candidate_gain(incumbent, candidate) -> float:
    return (sum(r.passed for r in candidate.values()) - sum(r.passed for r in incumbent.values())) / len(incumbent)
