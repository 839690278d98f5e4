"""The search engine (run loop, scorer, budget, acceptance, candidates, splits, estimate, the strategy protocol)
and, in `strategies/`, one module per strategy."""
from __future__ import annotations

from promptopt.optimizer.strategies import default_steps, make_strategy, strategy_class, strategy_names

__all__ = ["default_steps", "make_strategy", "strategy_class", "strategy_names"]
