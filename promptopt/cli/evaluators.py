"""`promptopt evaluators list`: the built-in and plugin evaluators a run can name."""
from __future__ import annotations

import json

import click


@click.group()
def evaluators() -> None:
    """Evaluators that can score outputs: built-ins and installed plugins."""


@evaluators.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {name, source, description}.")
def list_evaluators(as_json) -> None:
    """Name, source (built-in or the plugin's distribution) and a one-line description of each evaluator.

    \b
    Plugins register under the entry point group `promptopt.evaluators`; use them with --evaluator NAME.
    """
    from promptopt.evaluators.registry import available

    found = available().values()
    if as_json:
        click.echo(json.dumps([{"name": e.name, "source": e.source, "description": e.description} for e in found],
                              ensure_ascii=False))
        return
    width = max(len(e.name) for e in found)
    source_width = max(len(e.source) for e in found)
    for info in found:
        click.echo(f"{info.name:{width}}  {info.source:{source_width}}  {info.description}")
