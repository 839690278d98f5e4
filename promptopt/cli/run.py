"""`promptopt run`: the whole job from the command line; the strategies' own flags come from their declarations."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from promptopt.cli.shared import db_option, progress_options, user_errors
from promptopt.cli.signals import exit_on_interrupt
from promptopt.cli.strategy_flags import StrategyCommand
from promptopt.optimizer.estimate import Estimate
from promptopt.optimizer.options import parse_assignments
from promptopt.optimizer.strategies import default_steps, strategy_names
from promptopt.progress import Progress
from promptopt.request import RunRequest
from promptopt.runs.report import format_report
from promptopt.tasks import TASKS

if TYPE_CHECKING:
    from promptopt.api import RunResult

RESUME_FLAGS = {"resume_id", "db", "api_key", "optimizer_api_key", "config_file", "concurrency", "as_json",
                "verbosity", "report_file"}
"""What `--resume` may be given with: where the store is, keys, calls in flight and output; nothing that would
change the search."""


@click.command(cls=StrategyCommand)
@click.option("--task", type=click.Choice(sorted(TASKS)), default="tool-routing", show_default=True,
              help="What the model does with each case.")
@click.option("--cases", "case_files", multiple=True, type=click.Path(dir_okay=False),
              help="Case file (.jsonl or .csv; repeatable). Default: the task's bundled bad and good cases.")
@click.option("--prompt", "prompt_file", type=click.Path(dir_okay=False),
              help="Seed system prompt file. Default: the task's bundled prompt.")
@click.option("--tools", "tools_file", type=click.Path(dir_okay=False),
              help="Tools in OpenAI function schema (JSON list). Default: the task's bundled tools.")
@click.option("--strategy", default="demos", show_default=True, metavar="NAME",
              help=f"Search strategy: {', '.join(strategy_names())}, or module:Class for your own. Its options "
                   "are the flags below that name it, or -o KEY=VALUE.")
@click.option("-o", "--option", "assignments", multiple=True, metavar="KEY=VALUE",
              help="A strategy option by name (repeatable), e.g. -o n_demos=8; the same as its flag.")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="Search steps (APO: rounds; DSPy: runs of its optimizer) [default: the strategy's: "
                   f"{', '.join(f'{n} {default_steps(n)}' for n in strategy_names())}].")
@click.option("--seed", type=int, default=RunRequest.seed, show_default=True,
              help="Random seed for splits and sampling.")
@click.option("--model", default=None,
              help="Task model (the one whose prompt is optimized): 'embedded' (the local Qwen2.5-Coder-0.5B-Instruct, the default) or any "
                   "model name an OpenAI-compatible endpoint serves.")
@click.option("--base-url", default=None,
              help="OpenAI-compatible endpoint of --model (default: config file, then $OPENAI_BASE_URL, then OpenAI).")
@click.option("--api-key", default=None,
              help="Key for --base-url (default: config file, then $OPENAI_API_KEY; prefer the variable: flags "
                   "show up in shell history). Never stored.")
@click.option("--optimizer-model", default=None,
              help="Model that writes prompts (opro, apo, bpo); same choices as --model. Default: embedded.")
@click.option("--optimizer-base-url", default=None, help="OpenAI-compatible endpoint of --optimizer-model.")
@click.option("--optimizer-api-key", default=None, help="Key for --optimizer-base-url (like --api-key).")
@click.option("--concurrency", type=click.IntRange(1), default=RunRequest.concurrency, show_default=True,
              help="API calls in flight at once (OpenAI-compatible models).")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Answer repeated requests from the on-disk response cache ($PROMPTOPT_CACHE_DIR or "
                   "~/.promptopt/cache), so re-running a finished run calls no model.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="JSON config file with task_model / optimizer_model settings and prices "
                   "(default: $PROMPTOPT_CONFIG or ~/.promptopt/config.json when present).")
@click.option("--budget-calls", type=click.IntRange(1), default=None,
              help="Stop searching after this many model calls (the final test scoring is not counted).")
@click.option("--budget-tokens", type=click.IntRange(1), default=None,
              help="Stop searching after this many tokens (in + out, cached calls included).")
@click.option("--budget-usd", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop searching after this many dollars at list price (see the README's price table).")
@click.option("--budget-seconds", type=click.FloatRange(1), default=None,
              help="Stop searching after this many seconds of wall time.")
@click.option("--max-broken", type=click.IntRange(0), default=RunRequest.max_broken, show_default=True,
              help="Previously-good validation cases a candidate may break and still be accepted.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Also require a significant validation gain (exact McNemar p < ALPHA) to accept.")
@click.option("--min-gain", type=click.FloatRange(0, 1), default=RunRequest.min_gain, show_default=True,
              help="Validation accuracy a candidate must gain over the incumbent to be accepted, as a fraction "
                   "(0.03 = 3 points): a gain of a case or two on a small validation set is often luck.")
@click.option("--check-arguments/--no-check-arguments", "--arguments/--no-arguments", default=False,
              show_default=True,
              help="Also generate and check tool arguments (slow on the embedded model).")
@click.option("--evaluator", "evaluator_specs", multiple=True, metavar="NAME[=WEIGHT]",
              help="What scores each output (repeatable): a built-in or plugin name, optionally weighted as NAME=0.5 "
                   "or NAME:0.5; several are averaged by weight. See `promptopt evaluators list`. Default: tool_call.")
@click.option("--all-must-pass", is_flag=True,
              help="With several --evaluator: a case passes only if every evaluator passes (score: the lowest).")
@click.option("--pattern", default=None,
              help="exact / contains / regex: the reference text or regular expression for every case "
                   "(default: each case's expected.text).")
@click.option("--rubric", default=None, metavar="TEXT|FILE",
              help="judge: the rubric, as text or a file holding it (default: right tool, arguments and reply).")
@click.option("--judge-model", default=None,
              help="judge: the model that judges; same choices as --model. Default: config file, then embedded.")
@click.option("--judge-base-url", default=None, help="OpenAI-compatible endpoint of --judge-model.")
@click.option("--judge-api-key", default=None, help="Key for --judge-base-url (like --api-key).")
@click.option("--resume", "resume_id", default=None, metavar="RUN_ID",
              help="Continue an interrupted or failed run with its stored settings, split and budget, the response "
                   "cache answering the calls it already made; only --db, --api-key, --optimizer-api-key, --config, "
                   "--concurrency, --json, --report, --quiet and --verbose may be given with it.")
@db_option
@click.option("--estimate", is_flag=True,
              help="Print the expected model calls (a judge's included), tokens and cost of this run, then stop "
                   "without calling any model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result as the last line.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False), default=None,
              help="At the end, also write the run's HTML report to this file (see `promptopt report`).")
@progress_options
def run(task, case_files, prompt_file, tools_file, strategy, assignments, steps, seed, model, base_url, api_key,
        optimizer_model, optimizer_base_url, optimizer_api_key, concurrency, cache, config_file, budget_calls,
        budget_tokens, budget_usd, budget_seconds, max_broken, alpha, min_gain, check_arguments, evaluator_specs,
        all_must_pass, pattern, rubric, judge_model, judge_base_url, judge_api_key, resume_id, db, estimate, as_json,
        report_file, progress, **strategy_values) -> None:
    """Import cases, search for a better system prompt, and report seed vs. winner on held-out cases.

    The cases are split (train / validation / test, stratified by expected tool). Candidates are built
    from the training cases, accepted only if better on validation without breaking more than
    --max-broken previously-good cases, and the final table compares seed and winner on the test split
    with 95% confidence intervals and an exact McNemar test.
    """
    from promptopt.api import estimate as estimate_run
    from promptopt.api import optimize

    if resume_id:
        result = _resume(resume_id, db, api_key, optimizer_api_key, concurrency, config_file, progress)
        _finish(result, as_json, db, report_file, progress)
        return
    with user_errors():
        options = {**parse_assignments(assignments),
                   **{name: value for name, value in strategy_values.items() if value is not None}}
        request = RunRequest(
            task=task, cases=case_files or None, prompt=prompt_file, tools=tools_file, strategy=strategy,
            options=options, steps=steps, seed=seed, model=model, base_url=base_url, api_key=api_key,
            optimizer_model=optimizer_model, optimizer_base_url=optimizer_base_url,
            optimizer_api_key=optimizer_api_key, judge_model=judge_model, judge_base_url=judge_base_url,
            judge_api_key=judge_api_key, concurrency=concurrency, cache=cache, config_file=config_file, db=db,
            max_calls=budget_calls, max_seconds=budget_seconds, max_tokens=budget_tokens, max_usd=budget_usd,
            max_broken=max_broken, alpha=alpha, min_gain=min_gain, check_arguments=check_arguments,
            evaluators=list(evaluator_specs) or None, all_must_pass=all_must_pass, pattern=pattern, rubric=rubric)
        if estimate:
            _print_estimate(estimate_run(request), model or "the task model", as_json)
            return
        with exit_on_interrupt():
            result = optimize(request, progress=progress)
    _finish(result, as_json, db, report_file, progress)


def _resume(run_id: str, db: str | None, api_key: str | None, optimizer_api_key: str | None, concurrency: int,
            config_file: str | None, progress: Progress) -> RunResult:
    """`--resume RUN_ID`: refuse the flags that would change the search, then continue the run."""
    from promptopt.api import resume

    context = click.get_current_context()
    given = [param for param in context.command.get_params(context) if param.name not in RESUME_FLAGS
             and context.get_parameter_source(param.name) is not ParameterSource.DEFAULT]
    if given:
        flags = ", ".join("/".join(param.opts[:1] + param.secondary_opts[:1]) for param in given)
        raise click.UsageError(f"--resume continues the run with its stored settings; these cannot be given with "
                               f"it: {flags}")
    explicit = context.get_parameter_source("concurrency") is not ParameterSource.DEFAULT
    with user_errors(), exit_on_interrupt():
        return resume(run_id, db, progress, api_key=api_key, optimizer_api_key=optimizer_api_key,
                      concurrency=concurrency if explicit else None, config_file=config_file)


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
    cost = f"${expected.cost_usd:.4f}" if expected.price_known else f"unknown (no price for {model}; see --config)"
    judged = f" ({expected.judge_calls} of them the judge's)" if expected.judge_calls else ""
    click.echo(f"expected model calls: at most {expected.calls}{judged}\n"
               f"tokens: about {expected.tokens_in} in, {expected.tokens_out} out\n"
               f"cost at list price: {cost}")
