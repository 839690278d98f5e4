"""The search: run loop, budget, acceptance, candidates and one module per strategy."""
from __future__ import annotations

import inspect
from typing import Any

from promptopt.optimizer.strategies.apo import ApoStrategy
from promptopt.optimizer.strategies.bpo import BpoStrategy
from promptopt.optimizer.strategies.demos import DemosStrategy
from promptopt.optimizer.strategies.dspy import DSPY_STRATEGIES
from promptopt.optimizer.strategies.opro import OproStrategy
from promptopt.optimizer.strategy import Strategy

STRATEGIES = {"demos": DemosStrategy, "opro": OproStrategy, "apo": ApoStrategy, "bpo": BpoStrategy,
              **DSPY_STRATEGIES}


def make_strategy(name: str, options: dict[str, Any] | None = None) -> Strategy:
    """A strategy by name, with its options (e.g. `n_demos` for demos)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](**(options or {}))


def default_steps(name: str) -> int:
    """Steps (rounds) a strategy runs when the user does not say: its own `default_steps`, else one."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}")
    return int(getattr(STRATEGIES[name], "default_steps", 1))


def strategy_parameters(name: str) -> set[str]:
    """The option names a strategy takes (its constructor's keyword parameters)."""
    return set(inspect.signature(STRATEGIES[name]).parameters)
