"""Best-arm identification on synthetic Bernoulli arms with known means, against what theory promises.

Instance: 8 arms, means 0.9 and seven at 0.5 (every gap 0.4), so H1 = sum gap^-2 = 43.75 and
H2 = max_i i * gap_(i)^-2 = 50. Promised error rates at the budgets used here:
- successive rejects (Audibert, Bubeck & Munos 2010, Thm 2): K(K-1)/2 * exp(-(n-K) / (logbar(K) H2));
  n = 800 gives <= 0.022.
- UCB-E with a = 25/36 (n-K)/H1 (same paper, Thm 1): 2nK * exp(-2a/25); n = 12,000 gives <= 0.05.
- uniform allocation (Hoeffding on each pair of means, n/K pulls per arm): sum_i exp(-(n/K) gap_i^2 / 2);
  n = 560 gives <= 0.026.
- UCB with log t exploration has no exponential fixed-budget guarantee (Bubeck, Munos & Stoltz 2009 prove only
  polynomial decay), so it is held to the uniform allocation's Hoeffding promise at n = 560.
Each promise is checked over 200 (UCB-E: 40) seeded trials, allowing three standard errors of Monte-Carlo slack.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from promptopt.optimizer.bandits import hardness_h1, select_arms, successive_rejects, ucb, ucb_e, uniform

MEANS = np.array([0.9] + [0.5] * 7)
K = len(MEANS)
GAPS = MEANS[0] - MEANS[1:]
H1 = float(np.sum(GAPS ** -2.0))
H2 = max((i + 2) / gap ** 2 for i, gap in enumerate(np.sort(GAPS)))
LOG_BAR = 0.5 + sum(1 / i for i in range(2, K + 1))


def promise_successive_rejects(n: int) -> float:
    return K * (K - 1) / 2 * math.exp(-(n - K) / (LOG_BAR * H2))


def promise_ucb_e(n: int) -> float:
    a = 25 / 36 * (n - K) / H1
    return 2 * n * K * math.exp(-2 * a / 25)


def promise_uniform(n: int) -> float:
    return float(np.sum(np.exp(-(n // K) * GAPS ** 2 / 2)))


def success_rate(run, trials: int) -> float:
    wins = 0
    for trial in range(trials):
        rng = np.random.default_rng(1000 + trial)
        order = rng.permutation(K)  # the best arm sits anywhere
        means = MEANS[order]
        pulls = 0

        def pull(arm: int) -> float:
            nonlocal pulls
            pulls += 1
            return float(rng.random() < means[arm])

        selection = run(pull)
        assert pulls == selection.spent
        wins += selection.chosen[0] == int(np.argmax(means))
    return wins / trials


@pytest.mark.parametrize("name, run, budget, promise, trials", [
    ("successive rejects", lambda pull: successive_rejects(pull, K, 800), 800, promise_successive_rejects(800), 200),
    ("UCB-E", lambda pull: ucb_e(pull, K, 12_000, a=25 / 36 * (12_000 - K) / H1), 12_000, promise_ucb_e(12_000), 40),
    ("uniform", lambda pull: uniform(pull, K, 560), 560, promise_uniform(560), 200),
    ("UCB", lambda pull: ucb(pull, K, 560), 560, promise_uniform(560), 200),
])
def test_identifies_the_best_arm_at_the_promised_rate(name, run, budget, promise, trials):
    assert promise < 0.1  # the budgets above are where each promise says something
    rate = success_rate(run, trials)
    slack = 3 * math.sqrt(max(promise, 1 / trials) * (1 - promise) / trials)
    assert rate >= 1 - promise - slack, f"{name}: {rate:.3f} < promised {1 - promise:.3f}"


@pytest.mark.parametrize("algorithm", ["ucb", "ucb-e", "successive-rejects", "uniform"])
def test_budget_is_never_exceeded_and_top_b_is_returned(algorithm):
    rng = np.random.default_rng(0)
    means = np.linspace(0.2, 0.8, 10)
    spent = 0

    def pull(arm: int) -> float:
        nonlocal spent
        spent += 1
        return float(rng.random() < means[arm])

    selection = select_arms(algorithm, pull, 10, 137, select=4)
    assert spent == selection.spent <= 137
    assert len(selection.chosen) == 4 and len(set(selection.chosen)) == 4
    assert all(selection.means[a] >= selection.means[b] for a, b in zip(selection.chosen, selection.chosen[1:]))


def test_ucb_spends_more_pulls_on_the_best_arms_than_uniform():
    means = np.array([0.8, 0.75, 0.4, 0.35, 0.3, 0.3, 0.2, 0.1])
    best_two = [0, 1]
    shares = {"ucb": [], "uniform": []}
    for trial in range(50):
        for algorithm in shares:
            rng = np.random.default_rng(trial)
            selection = select_arms(algorithm, lambda arm: float(rng.random() < means[arm]), 8, 400, select=2)
            shares[algorithm].append(selection.pulls[best_two].sum() / selection.spent)
    assert np.mean(shares["uniform"]) == pytest.approx(0.25)
    assert np.mean(shares["ucb"]) > 0.4


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        ucb(lambda arm: 0.5, 8, 5)
    with pytest.raises(ValueError):
        uniform(lambda arm: 1.5, 2, 4)
    with pytest.raises(ValueError):
        select_arms("thompson", lambda arm: 0.5, 2, 4, 1)
    assert hardness_h1(np.array([0.9, 0.5])) == pytest.approx(1 / 0.16)
