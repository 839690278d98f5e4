"""`promptopt check`: the CI gate. Scores one prompt on the stored (or given) cases with the configured model and
exits 1 when it breaks previously-good cases or falls below an accuracy floor, saying what broke."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import click

from promptopt.case import LABELS, choice_text
from promptopt.case_selection import CaseSelection
from promptopt.cli.junit import write_junit
from promptopt.cli.setting_flags import setting_flags, setting_values
from promptopt.cli.shared import progress_options, user_errors
from promptopt.optimizer.check import CheckResult, Thresholds, check_prompt
from promptopt.progress import Progress
from promptopt.request import RunRequest
from promptopt.runs.mlflow_tracking import is_registry_reference, load_registered_prompt, tracking_uri
from promptopt.tasks import TASKS, checked_prompt

CHECK_FLAGS = ["task", "tools", "model", "base_url", "api_key", "concurrency", "cache", "config_file", "evaluators",
               "all_must_pass", "pattern", "rubric", "judge_model", "judge_base_url", "judge_api_key",
               "check_arguments", "db", "sources", "tags", "track"]
"""The run settings a check takes, as `promptopt run` has them (`--track`: where a registered PROMPT is read)."""
HELP = {"track": {"help": "MLflow tracking URI of the registry a PROMPT mlflow:NAME/VERSION or mlflow:NAME@ALIAS is "
                          "read from (default: the config file's `track`, then $MLFLOW_TRACKING_URI)."}}
QUERY_CHARS = 70
"""How much of a broken case's query the report shows."""


class AccuracyFloor(click.ParamType):
    """An accuracy floor: a fraction from 0 to 1 (`0.8`) or a percentage (`80%`)."""

    name = "X"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)", text)
        number = float(match.group(1)) / (100 if match.group(2) else 1) if match else -1.0
        if not 0 <= number <= 1:
            self.fail(f"{value!r} is not a fraction from 0 to 1 or a percentage from 0% to 100%", param, ctx)
        return number


@click.command()
@click.argument("prompt_file", type=click.Path(dir_okay=False))
@click.option("--cases", "case_files", multiple=True, type=click.Path(dir_okay=False),
              help="Case file (.jsonl or .csv; repeatable), imported into the store all or nothing; only its cases "
                   "are checked. Default: every stored case.")
@click.option("--label", type=click.Choice(LABELS), default=None, help="Check only the cases with this label.")
@click.option("--max-broken", type=click.IntRange(0), default=0, show_default=True,
              help="Previously-good cases (label good) the prompt may get wrong and still pass.")
@click.option("--min-accuracy", type=AccuracyFloor(), default=None,
              help="Fail below this accuracy on the checked cases: a fraction (0.8) or a percentage (80%).")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False), default=None,
              help="Also write the result as JUnit XML (one test case per case, one for the thresholds).")
@setting_flags(CHECK_FLAGS, HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result as the last line.")
@progress_options
def check(prompt_file, case_files, label, max_broken, min_accuracy, junit_file, as_json, progress, **values) -> None:
    """Score PROMPT_FILE on the stored cases (or --cases files) and fail when it breaks previously-good cases.
    PROMPT_FILE may also be a prompt in MLflow's Prompt Registry: mlflow:NAME/VERSION or mlflow:NAME@ALIAS.

    Exits 0 when the prompt passes, 1 when more than --max-broken cases labelled good are wrong under it or its
    accuracy is below --min-accuracy (each broken case is listed), 2 when it could not check (a usage error, a bad
    prompt, cases, tools or config file, no cases, an unreachable store). The check is stored as a run of strategy
    `check`: `promptopt runs show RUN_ID` shows it again.
    """
    registered = is_registry_reference(prompt_file)
    request = RunRequest(prompt=None if registered else prompt_file, max_broken=max_broken,
                         **setting_values(values, CHECK_FLAGS))
    try:
        with user_errors():
            prompt = checked_prompt(load_registered_prompt(prompt_file, tracking_uri(request.track,
                                                                                      request.config_file)),
                                    prompt_file) if registered else None
            result = _run_check(request, case_files, CaseSelection.of(request.sources, request.tags), label,
                                Thresholds(max_broken, min_accuracy), progress, prompt)
    except click.ClickException as error:
        error.exit_code = 2  # the check could not measure anything: a CI job must not read it as a regression
        raise
    if junit_file:
        write_junit(result, junit_file)
    click.echo(json.dumps(_summary(result)) if as_json else _format(result, prompt_file))
    if not result.passed:
        raise SystemExit(1)


def _run_check(request: RunRequest, case_files: tuple[str, ...], selection: CaseSelection, label: str | None,
               thresholds: Thresholds, progress: Progress, prompt: str | None = None) -> CheckResult:
    """Resolve tools, prompt, model and evaluator as `promptopt run` does, pick the cases (the files', then the
    stored ones `selection` takes; every stored case when neither is given), and score the prompt (`prompt`, the
    text of a registered one, where given)."""
    from promptopt.api import _evaluator, _setup, _with_selected, import_case_files
    from promptopt.models import load_model
    from promptopt.runs.store import Store

    setup = _setup(request)
    store = Store(request.db)
    cases = import_case_files(store, case_files, setup.tools) if case_files else []
    cases = _with_selected(store, cases, selection) if selection else cases if case_files else store.cases()
    cases = [c for c in cases if label is None or c.label == label]
    if not cases:
        where = "in the given files" if case_files else f"in the store {store.url}"
        raise click.ClickException(f"no {label + ' ' if label else ''}cases to check {where}; import some with "
                                   "`promptopt cases import FILE` or pass --cases FILE")
    backend = load_model(setup.task_settings, request.concurrency, request.cache, setup.prices)
    evaluator = _evaluator(request, setup, backend)
    config = replace(setup.config, evaluator=evaluator.name,
                     check_arguments=request.check_arguments or bool(getattr(evaluator, "check_arguments", False)))
    task = TASKS[request.task](tools=setup.tools, check_arguments=config.check_arguments)
    return check_prompt(store, task, prompt or setup.seed_prompt, cases, backend, evaluator, config, thresholds,
                        progress)


def _format(result: CheckResult, prompt_file: str) -> str:
    """The table, the broken good cases and the verdict, for a person reading CI logs."""
    good, bad = result.labelled("good"), result.labelled("bad")
    lo, hi = result.ci95
    calls = result.calls
    lines = [f"check {prompt_file} on {len(result.outcomes)} cases ({len(good)} good, {len(bad)} bad), "
             f"run {result.run_id}",
             "",
             f"{'accuracy':24}{100 * result.accuracy:6.1f}%   95% CI [{100 * lo:.1f}, {100 * hi:.1f}]",
             f"{'good cases broken':24}{len(result.broken):6} of {len(good)} ({result.thresholds.max_broken} allowed)",
             f"{'bad cases fixed':24}{len(result.fixed):6} of {len(bad)} (production's recorded answer was wrong)",
             f"model calls {calls.get('model_calls', 0)} ({calls.get('new_model_calls', 0)} new, "
             f"{calls.get('cache_hits', 0)} from cache), tokens in {calls.get('tokens_in', 0)}, out "
             f"{calls.get('tokens_out', 0)}, spent ${calls.get('cost_usd', 0.0):.4f}"]
    if calls.get("failed_calls"):
        lines.append(f"warning: {calls['failed_calls']} model call(s) failed after their last retry; counted as wrong")
    if result.broken:
        lines += ["", "broken good cases:"]
        lines += [_broken_line(outcome) for outcome in result.broken]
    lines += ["", result.verdict]
    return "\n".join(lines)


def _broken_line(outcome: Any) -> str:
    """One broken good case: id, query (one line, shortened), expected tool, the prompt's choice."""
    query = " ".join(outcome.case.query.split())
    query = query if len(query) <= QUERY_CHARS else query[:QUERY_CHARS - 1] + "…"
    return (f"  case {outcome.case.id}: {json.dumps(query, ensure_ascii=False)}  expected "
            f"{choice_text(outcome.case.expected)}, the prompt chose "
            f"{choice_text(outcome.result.output, outcome.result.error)}")


def _summary(result: CheckResult) -> dict[str, Any]:
    """The result as one JSON object (`--json`)."""
    lo, hi = result.ci95
    return {"passed": result.passed, "verdict": result.verdict, "run_id": result.run_id,
            "cases": len(result.outcomes), "passed_cases": sum(o.passed for o in result.outcomes),
            "accuracy": result.accuracy, "ci95": [lo, hi], "good": len(result.labelled("good")),
            "broken": len(result.broken), "broken_case_ids": [o.case.id for o in result.broken],
            "bad": len(result.labelled("bad")), "fixed": len(result.fixed),
            "fixed_case_ids": [o.case.id for o in result.fixed],
            "max_broken": result.thresholds.max_broken, "min_accuracy": result.thresholds.min_accuracy,
            **result.calls}
