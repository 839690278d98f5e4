"""Command-line flags made from the strategies' option declarations: one flag per option name, whose help lists
each strategy that takes it with its default. `promptopt run` never names a strategy's setting itself."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import click

from promptopt.optimizer.options import Option
from promptopt.optimizer.strategies import strategy_class, strategy_names

STRATEGY_META = "promptopt.strategy"


def declared_options(extra: str | None = None) -> dict[str, list[tuple[str, Option]]]:
    """Every option name any strategy declares (plus those of `extra`, a `module:Class` strategy), with the
    strategies that declare it."""
    names = strategy_names() + ([extra] if extra and extra not in strategy_names() else [])
    found: dict[str, list[tuple[str, Option]]] = defaultdict(list)
    for name in names:
        try:
            declared = strategy_class(name).options
        except ValueError:
            continue  # an unloadable strategy is reported when it is chosen
        for option in declared:
            found[option.name].append((name, option))
    return found


def flag_help(declarations: Sequence[tuple[str, Option]]) -> str:
    """`demos: examples per candidate prompt [22]; opro: ...`, strategies with the same text and default joined."""
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for strategy, option in declarations:
        grouped[(option.help, option.describe_default())].append(strategy)
    return "; ".join(f"{', '.join(strategies)}: {text} [default: {default}]"
                     for (text, default), strategies in grouped.items())


def click_type(option: Option) -> Any:
    if option.type is bool:
        return click.BOOL
    if option.choices:
        return click.Choice(option.choices)
    return {int: click.INT, float: click.FLOAT}.get(option.type, click.STRING)


def strategy_flags(extra: str | None = None) -> list[click.Option]:
    """The flags of every strategy's options, sorted by name; values are checked when the strategy is built."""
    flags = []
    for name, declarations in sorted(declared_options(extra).items()):
        kinds = {(o.type, o.choices) for _, o in declarations}
        first = declarations[0][1]
        kind = click_type(first) if len(kinds) == 1 else click.STRING
        flags.append(click.Option([first.flag, name], type=kind, default=None, help=flag_help(declarations)))
    return flags


def peek_strategy(args: Sequence[str]) -> str | None:
    """The `--strategy` value in raw arguments, before parsing (so a `module:Class` strategy gets its flags)."""
    for index, arg in enumerate(args):
        if arg == "--strategy" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--strategy="):
            return arg.split("=", 1)[1]
    return None


class StrategyCommand(click.Command):
    """A command whose parameters include every strategy's option flags, made when it is parsed or helped."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[STRATEGY_META] = peek_strategy(args)
        return super().parse_args(ctx, args)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        extra = ctx.meta.get(STRATEGY_META)
        help_option = [p for p in params if p.name == "help"]
        return [*[p for p in params if p.name != "help"], *strategy_flags(extra), *help_option]
