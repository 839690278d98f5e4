"""The `promptopt` command line: a table of contents. Each command group lives in its own module; a plugin strategy
that has commands of its own adds them through its class's `commands` entry. Its imports take seconds, and Ctrl-C
while they load ends the command line with one line (`signals.loading`)."""
from __future__ import annotations

import importlib

import click

from promptopt.cli.signals import loading

with loading():
    from promptopt.cli.bpo import bpo
    from promptopt.cli.cache import cache
    from promptopt.cli.cases import cases
    from promptopt.cli.check import check
    from promptopt.cli.dependency_warnings import route_dependency_warnings
    from promptopt.cli.evaluators import evaluators
    from promptopt.cli.report import report
    from promptopt.cli.run import run
    from promptopt.cli.runs import export, runs
    from promptopt.cli.serve import serve
    from promptopt.cli.shared import user_errors


class _Commands(click.Group):
    """The command group; an error a command leaves unmapped (opening the store, say) still becomes one line, and
    Ctrl-C in any command is "interrupted" and exit 130 (not click's "Aborted!" and exit 1)."""

    def invoke(self, ctx: click.Context) -> object:
        route_dependency_warnings()
        with loading(), user_errors():
            return super().invoke(ctx)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="promptopt")
def main() -> None:
    """Optimize an LLM agent's system prompt from the cases it got wrong.

    \b
    Typical use:
      promptopt run --task tool-routing                  # bundled grocery-app task
      promptopt run --cases bad.jsonl --prompt system.md --tools tools.json
      promptopt export RUN_ID -o best_prompt.md          # the prompt to deploy
      promptopt report RUN_ID -o report.html             # plots, per-case table, prompt diff

    Everything is recorded in a store (SQLite by default) so runs can be inspected later
    with `promptopt runs show RUN_ID`.
    """


for command in (run, check, report, export, cases, runs, cache, evaluators, serve, bpo):
    main.add_command(command)


def _add_strategy_commands() -> None:
    """The command groups strategies declare (`commands = "module:attribute"`)."""
    from promptopt.optimizer.strategies import strategy_class, strategy_names

    for name in strategy_names():
        spec = getattr(strategy_class(name), "commands", "")
        if spec:
            module, _, attribute = spec.partition(":")
            main.add_command(getattr(importlib.import_module(module), attribute))


with loading():
    _add_strategy_commands()
