"""`promptopt run`: the whole job from the command line; the strategies' own flags come from their declarations."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from promptopt.cli.setting_flags import setting_flags, setting_values
from promptopt.cli.shared import progress_options, user_errors
from promptopt.cli.signals import exit_on_interrupt
from promptopt.cli.strategy_flags import StrategyCommand
from promptopt.optimizer.estimate import Estimate
from promptopt.optimizer.options import parse_assignments
from promptopt.optimizer.strategies import default_steps, strategy_names
from promptopt.progress import Progress
from promptopt.request import RunRequest
from promptopt.run_settings import RUN_SETTINGS
from promptopt.runs.report import format_report, full_run_id

if TYPE_CHECKING:
    from promptopt.api import RunResult

RUN_FLAGS = [s.name for s in RUN_SETTINGS if s.request and s.flags]
"""The run settings `promptopt run` has flags for, in the order --help lists them."""
RESUME_FLAGS = {s.name for s in RUN_SETTINGS if s.resumable} | {"resume_id", "as_json", "verbosity", "report_file"}
"""What `--resume` may be given with: where the store is, keys, calls in flight and output; nothing that would
change the search."""
HELP = {
    "strategy": {"help": f"Search strategy: {', '.join(strategy_names())}, or module:Class for your own. Its "
                         "options are the flags below that name it, or -o KEY=VALUE."},
    "steps": {"help": "Search steps (APO: rounds; DSPy: runs of its optimizer) [default: the strategy's: "
                      f"{', '.join(f'{n} {default_steps(n)}' for n in strategy_names())}]."},
}
"""Help that lists what is installed, made when the command is."""


@click.command(cls=StrategyCommand)
@setting_flags(RUN_FLAGS[:RUN_FLAGS.index("strategy") + 1], HELP)
@click.option("-o", "--option", "assignments", multiple=True, metavar="KEY=VALUE",
              help="A strategy option by name (repeatable), e.g. -o n_demos=8; the same as its flag.")
@setting_flags(RUN_FLAGS[RUN_FLAGS.index("strategy") + 1:], HELP)
@click.option("--resume", "resume_id", default=None, metavar="RUN_ID",
              help="Continue an interrupted or failed run with its stored settings, split and budget, the response "
                   "cache answering the calls it already made; only --db, --track, --api-key, --optimizer-api-key, "
                   "--config, --concurrency, --base-url and --optimizer-base-url (the same models, moved), --json, "
                   "--report, --quiet and --verbose may be given with it.")
@click.option("--estimate", is_flag=True,
              help="Print the expected model calls (a judge's included), tokens and cost of this run, then stop "
                   "without calling any model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result as the last line.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False), default=None,
              help="At the end, also write the run's HTML report to this file (see `promptopt report`).")
@progress_options
def run(assignments, resume_id, estimate, as_json, report_file, progress, **values) -> None:
    """Import cases, search for a better system prompt, and report seed vs. winner on held-out cases.

    The cases are split (train / validation / test, stratified by expected tool). Candidates are built
    from the training cases, accepted only if better on validation without breaking more than
    --max-broken previously-good cases, and the final table compares seed and winner on the test split
    with 95% confidence intervals and an exact McNemar test.
    """
    from promptopt.api import estimate as estimate_run
    from promptopt.api import optimize

    settings = setting_values(values, RUN_FLAGS)
    if resume_id:
        result = _resume(resume_id, settings, progress)
        _finish(result, as_json, settings["db"], report_file, progress)
        return
    with user_errors():
        options = {**parse_assignments(assignments),
                   **{name: value for name, value in values.items() if value is not None}}
        request = RunRequest(**settings, options=options)
        if estimate:
            _print_estimate(estimate_run(request), settings["model"] or "the task model", as_json)
            return
        with exit_on_interrupt():
            result = optimize(request, progress=progress)
    _finish(result, as_json, settings["db"], report_file, progress)


def _resume(run_id: str, settings: dict[str, Any], progress: Progress) -> RunResult:
    """`--resume RUN_ID` (or a prefix of it): refuse the flags that would change the search, then continue the run."""
    from promptopt.api import resume
    from promptopt.runs.store import Store

    context = click.get_current_context()
    given = [param for param in context.command.get_params(context) if param.name not in RESUME_FLAGS
             and context.get_parameter_source(param.name) is not ParameterSource.DEFAULT]
    if given:
        flags = ", ".join("/".join(param.opts[:1] + param.secondary_opts[:1]) for param in given)
        raise click.UsageError(f"--resume continues the run with its stored settings; these cannot be given with "
                               f"it: {flags}")
    explicit = context.get_parameter_source("concurrency") is not ParameterSource.DEFAULT
    with user_errors(), exit_on_interrupt():
        run_id = full_run_id(Store(settings["db"]), run_id)
        return resume(run_id, settings["db"], progress, api_key=settings["api_key"],
                      optimizer_api_key=settings["optimizer_api_key"],
                      concurrency=settings["concurrency"] if explicit else None, config_file=settings["config_file"],
                      base_url=settings["base_url"], optimizer_base_url=settings["optimizer_base_url"],
                      track=settings["track"])


def _finish(result: RunResult, as_json: bool, db: str | None, report_file: str | None, progress: Progress) -> None:
    """Write the HTML report if asked (`--report`), then print the result."""
    if report_file:
        from promptopt.cli.report import write_report
        from promptopt.runs.store import Store

        write_report(Store(db), result.run_id, report_file, progress)
    _print_result(result, as_json)


def _print_result(result: Any, as_json: bool) -> None:
    """The run's result: one JSON line, or the table and how to export the winner."""
    if as_json:
        report = result.report
        click.echo(json.dumps({
            "run_id": result.run_id,
            "seed": {k: report["seed"][k] for k in ("test_accuracy", "ci95", "val_accuracy")},
            "winner": {k: report["winner"][k] for k in ("test_accuracy", "ci95", "val_accuracy")},
            **{k: report[k] for k in ("p_value", "fixed", "broken", "test_cases", "model_calls", "new_model_calls",
                                      "cache_hits", "failed_calls", "tokens_in", "tokens_out", "cost_usd",
                                      "candidates", "accepted")},
            **({"evaluators": report["evaluators"]} if report.get("evaluators") else {}),
        }))
    else:
        click.echo(format_report(result.report))
        click.echo(f"\nrun id: {result.run_id}\nexport the winner: promptopt export {result.run_id} -o best_prompt.md")


def _print_estimate(expected: Estimate, model: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(expected.to_json()))
        return
    cost = f"${expected.cost_usd:.4f}" if expected.price_known else \
        f"unknown (no price for {model} or another model the run calls; see --config)"
    parts = [f"{expected.judge_calls} the judge's" if expected.judge_calls else "",
             f"{expected.optimizer_calls} the optimizer model's" if expected.optimizer_calls else ""]
    of_them = f" (of them {' and '.join(p for p in parts if p)})" if any(parts) else ""
    click.echo(f"expected model calls: at most {expected.calls}{of_them}\n"
               f"tokens: about {expected.tokens_in} in, at most {expected.tokens_out} out\n"
               f"cost at list price: {cost}")
    for warning in expected.warnings:
        click.echo(f"warning: {warning}", err=True)
