"""The search strategies, one module (a folder for a big one) each, apart from the engine, and their registry.

A strategy is found by name: a built-in below, one an installed package registers under the entry point group
`promptopt.strategies`, or `module:Class` for a class on the Python path (a strategy of your own, unregistered)."""
from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

from promptopt.optimizer.options import OptionError
from promptopt.plugins import plugin_entry_points
from promptopt.optimizer.strategies.dspy.bridge import gepa_missing
from promptopt.optimizer.strategy import Strategy

ENTRY_POINT_GROUP = "promptopt.strategies"
BUILT_IN = {
    "demos": "promptopt.optimizer.strategies.demos:DemosStrategy",
    "opro": "promptopt.optimizer.strategies.opro:OproStrategy",
    "apo": "promptopt.optimizer.strategies.apo:ApoStrategy",
    "rules": "promptopt.optimizer.strategies.rules:RulesStrategy",
    "bpo": "promptopt.optimizer.strategies.bpo:BpoStrategy",
    "dspy-copro": "promptopt.optimizer.strategies.dspy.optimizers:DspyCopro",
    "dspy-mipro": "promptopt.optimizer.strategies.dspy.optimizers:DspyMipro",
    "dspy-bootstrap": "promptopt.optimizer.strategies.dspy.optimizers:DspyBootstrap",
    # without DSPy it stays listed, so choosing it says to install DSPy
    **({} if gepa_missing() else {"dspy-gepa": "promptopt.optimizer.strategies.dspy.optimizers:DspyGepa"}),
}


def _load(spec: str) -> type:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


@lru_cache(maxsize=1)
def _plugins() -> dict[str, str]:
    """Strategies installed packages register (name -> `module:Class`); a built-in's name is not theirs to take."""
    taken = dict.fromkeys(BUILT_IN, "a built-in strategy")
    return {entry.name: entry.value for entry, _ in plugin_entry_points(ENTRY_POINT_GROUP, "strategy", taken)}


def strategy_names() -> list[str]:
    """Every strategy that can be chosen by name: built-ins, then plugins."""
    return [*BUILT_IN, *_plugins()]


def strategy_class(name: str) -> type:
    """The class of the strategy `name` (a registered name or `module:Class`)."""
    spec = BUILT_IN.get(name) or _plugins().get(name) or (name if ":" in name else None)
    if spec is None:
        raise OptionError(f"unknown strategy {name!r}; available: {', '.join(strategy_names())} "
                          "(or module:Class for your own)")
    try:
        return _load(spec)
    except (ImportError, AttributeError) as error:
        raise OptionError(f"strategy {name!r}: cannot load {spec}: {error}") from None


def make_strategy(name: str, options: dict[str, Any] | None = None) -> Strategy:
    """A strategy by name, with its options (e.g. `n_demos` for demos); unknown options are refused."""
    return strategy_class(name)(**(options or {}))


def default_steps(name: str) -> int:
    """Steps (rounds) a strategy runs when the user does not say: its own `default_steps`, else one."""
    return int(getattr(strategy_class(name), "default_steps", 1))
