"""Best-arm identification under a fixed budget of pulls, for choosing APO's next beam without scoring every
candidate on every case (Pryzant et al. 2023, section 2.2).

An arm is a candidate prompt; a pull scores it on one fresh random minibatch of training cases and returns the
share it got right, a reward in [0, 1]. Each algorithm spends at most `budget` pulls and returns the `select`
arms with the best empirical means. Independent of models and prompts: `pull(arm) -> reward` is all they see.

- `ucb`: pull every arm once, then the arm maximising mean + c * sqrt(log t / n_i) (ProTeGi's UCB; c = 2.0
  by default, larger explores more).
- `ucb_e`: mean + sqrt(a / n_i) with a fixed exploration parameter `a` (Audibert, Bubeck & Munos 2010); by
  default a = 25/36 * (budget - K) / H1 with H1 estimated from the first round of pulls.
- `successive_rejects`: K - 1 phases; phase k pulls every surviving arm up to n_k times and drops the worst
  (Audibert, Bubeck & Munos 2010), stopping once `select` arms remain.
- `uniform`: the brute-force reference, budget / K pulls per arm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

Pull = Callable[[int], float]
ALGORITHMS = ("ucb", "ucb-e", "successive-rejects", "uniform")


@dataclass(frozen=True)
class Selection:
    """The chosen arms (best first), and per arm: pulls spent and empirical mean reward."""

    chosen: list[int]
    pulls: np.ndarray
    means: np.ndarray

    @property
    def spent(self) -> int:
        return int(self.pulls.sum())


class _Tally:
    def __init__(self, arms: int, pull: Pull) -> None:
        self.pull_fn = pull
        self.pulls = np.zeros(arms, dtype=int)
        self.sums = np.zeros(arms)

    def pull(self, arm: int) -> None:
        reward = float(self.pull_fn(arm))
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"rewards must lie in [0, 1], arm {arm} gave {reward}")
        self.pulls[arm] += 1
        self.sums[arm] += reward

    @property
    def means(self) -> np.ndarray:
        return np.divide(self.sums, self.pulls, out=np.zeros_like(self.sums), where=self.pulls > 0)

    def selection(self, select: int, among: np.ndarray | None = None) -> Selection:
        means = self.means
        candidates = np.arange(len(means)) if among is None else np.asarray(among)
        order = sorted(candidates.tolist(), key=lambda arm: (-means[arm], -self.pulls[arm], arm))
        return Selection(chosen=order[:select], pulls=self.pulls.copy(), means=means)


def _check(arms: int, budget: int, select: int) -> None:
    if arms < 1 or not 1 <= select <= arms:
        raise ValueError("need at least one arm and 1 <= select <= arms")
    if budget < arms:
        raise ValueError(f"a budget of {budget} pulls cannot pull each of {arms} arms once")


def ucb(pull: Pull, arms: int, budget: int, select: int = 1, c: float = 2.0) -> Selection:
    """UCB as in ProTeGi: every arm once, then argmax of mean + c * sqrt(log t / n_i)."""
    _check(arms, budget, select)
    tally = _Tally(arms, pull)
    for arm in range(arms):
        tally.pull(arm)
    for t in range(arms + 1, budget + 1):
        index = tally.means + c * np.sqrt(math.log(t) / tally.pulls)
        tally.pull(int(np.argmax(index)))
    return tally.selection(select)


def ucb_e(pull: Pull, arms: int, budget: int, select: int = 1, a: float | None = None) -> Selection:
    """UCB-E: argmax of mean + sqrt(a / n_i); `a` defaults to 25/36 (budget - K) / H1, H1 from first pulls."""
    _check(arms, budget, select)
    tally = _Tally(arms, pull)
    for arm in range(arms):
        tally.pull(arm)
    if a is None:
        a = 25 / 36 * (budget - arms) / hardness_h1(tally.means)
    for _ in range(arms, budget):
        tally.pull(int(np.argmax(tally.means + np.sqrt(a / tally.pulls))))
    return tally.selection(select)


def successive_rejects(pull: Pull, arms: int, budget: int, select: int = 1) -> Selection:
    """Successive rejects: phase k brings every surviving arm to n_k pulls, then drops the worst."""
    _check(arms, budget, select)
    tally = _Tally(arms, pull)
    alive = list(range(arms))
    log_bar = 0.5 + sum(1 / i for i in range(2, arms + 1))
    for k in range(1, arms):
        if len(alive) <= select:
            break
        target = math.ceil((budget - arms) / (log_bar * (arms + 1 - k))) if arms > 1 else budget
        target = max(target, 1)
        for arm in alive:
            while tally.pulls[arm] < target and tally.pulls.sum() < budget:
                tally.pull(arm)
        means = tally.means
        worst = min(alive, key=lambda arm: (means[arm], tally.pulls[arm], -arm))
        alive.remove(worst)
    return tally.selection(select, np.array(alive))


def uniform(pull: Pull, arms: int, budget: int, select: int = 1) -> Selection:
    """Brute force: the same number of pulls for every arm (budget // K)."""
    _check(arms, budget, select)
    tally = _Tally(arms, pull)
    for _ in range(budget // arms):
        for arm in range(arms):
            tally.pull(arm)
    return tally.selection(select)


def hardness_h1(means: np.ndarray) -> float:
    """H1 = sum over suboptimal arms of gap^-2 (gaps floored at 0.05 so early noise cannot make it explode)."""
    ordered = np.sort(np.asarray(means, dtype=float))[::-1]
    gaps = np.maximum(ordered[0] - ordered[1:], 0.05)
    return float(np.sum(gaps ** -2)) if len(gaps) else 1.0


def select_arms(algorithm: str, pull: Pull, arms: int, budget: int, select: int, c: float = 2.0) -> Selection:
    """Run a best-arm algorithm by name (one of `ALGORITHMS`)."""
    if algorithm == "ucb":
        return ucb(pull, arms, budget, select, c)
    if algorithm == "ucb-e":
        return ucb_e(pull, arms, budget, select)
    if algorithm == "successive-rejects":
        return successive_rejects(pull, arms, budget, select)
    if algorithm == "uniform":
        return uniform(pull, arms, budget, select)
    raise ValueError(f"unknown bandit {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
