"""The `promptopt` command line."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from promptopt.config import ConfigFileError, default_db_url
from promptopt.evaluators.registry import EvaluatorError
from promptopt.models.pricing import PriceFileError
from promptopt.models.settings import ModelSettingsError
from promptopt.optimizer import STRATEGIES, make_strategy, strategy_parameters
from promptopt.optimizer.strategies.demos import DemosStrategy
from promptopt.optimizer.bandits import ALGORITHMS as BANDITS
from promptopt.optimizer.strategies.bpo import BpoStrategy
from promptopt.optimizer.strategies.bpo.rewriter import MODES
from promptopt.optimizer.strategies.opro import META_TEXT, OproStrategy
from promptopt.optimizer.loop import RunConfig
from promptopt.runs.case_import import CaseFileError
from promptopt.runs.export import FORMATS, export_prompt
from promptopt.runs.report import RunNotFound, format_report, run_report
from promptopt.runs.store import Store
from promptopt.tasks import TASKS, TaskFileError, bundled_task, load_tools

DB_HELP = f"SQLAlchemy database URL of the store (default: $PROMPTOPT_DB or {default_db_url()})."


def _progress(quiet: bool):
    started = time.monotonic()

    def say(message: str) -> None:
        if not quiet:
            click.echo(f"[{time.monotonic() - started:6.1f}s] {message}", err=True)

    return say


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="promptopt")
def main() -> None:
    """Optimize an LLM agent's system prompt from the cases it got wrong.

    \b
    Typical use:
      promptopt run --task tool-routing                  # bundled grocery-app task
      promptopt run --cases bad.jsonl --prompt system.md --tools tools.json
      promptopt export RUN_ID -o best_prompt.md          # the prompt to deploy

    Everything is recorded in a store (SQLite by default) so runs can be inspected later
    with `promptopt runs show RUN_ID`.
    """


@main.command()
@click.option("--task", type=click.Choice(sorted(TASKS)), default="tool-routing", show_default=True,
              help="What the model does with each case.")
@click.option("--cases", "case_files", multiple=True, type=click.Path(dir_okay=False),
              help="Case file (.jsonl or .csv; repeatable). Default: the task's bundled bad and good cases.")
@click.option("--prompt", "prompt_file", type=click.Path(dir_okay=False),
              help="Seed system prompt file. Default: the task's bundled prompt.")
@click.option("--tools", "tools_file", type=click.Path(dir_okay=False),
              help="Tools in OpenAI function schema (JSON list). Default: the task's bundled tools.")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="demos", show_default=True,
              help="Search strategy.")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="Search steps (APO: rounds; DSPy: runs of its optimizer) [default: the strategy's: demos 1, "
                   "opro 1, apo 6, bpo 1, dspy-* 1].")
@click.option("--seed", type=int, default=RunConfig.seed, show_default=True, help="Random seed for splits and sampling.")
@click.option("--model", default=None,
              help="Task model (the one whose prompt is optimized): 'embedded' (local SmolLM2, the default) or any "
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
@click.option("--concurrency", type=click.IntRange(1), default=RunConfig.concurrency, show_default=True,
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
@click.option("--max-broken", type=click.IntRange(0), default=RunConfig.max_broken, show_default=True,
              help="Previously-good validation cases a candidate may break and still be accepted.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Also require a significant validation gain (exact McNemar p < ALPHA) to accept.")
@click.option("--arguments/--no-arguments", default=False, show_default=True,
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
@click.option("--n-demos", type=click.IntRange(1), default=None,
              help=f"demos: examples per candidate prompt [default: {DemosStrategy().n_demos}].")
@click.option("--candidates", type=click.IntRange(1), default=None,
              help=f"Candidates per step: demo sets (demos, default {DemosStrategy().candidates}) or samples "
                   f"from the optimizer model (opro, default {OproStrategy().candidates}); COPRO's breadth, "
                   "MIPROv2's candidates, random-search programs (dspy-copro, dspy-mipro, dspy-bootstrap, default 3).")
@click.option("--train-sample", type=click.IntRange(1), default=None,
              help="Training cases each candidate is scored on before validation [default: 48; dspy-*: the "
                   "training cases DSPy sees, 24].")
@click.option("--history", type=click.IntRange(1), default=None,
              help=f"opro: best earlier prompts shown in the meta-prompt [default: {OproStrategy().history_size}].")
@click.option("--exemplars", type=click.IntRange(0), default=None,
              help=f"opro: training cases shown in the meta-prompt [default: {OproStrategy().exemplars}].")
@click.option("--temperature", type=click.FloatRange(0), default=None,
              help=f"opro: sampling temperature of the optimizer model [default: {OproStrategy().temperature}]; "
                   f"bpo: of the rewriter [default: the mode's].")
@click.option("--beam-width", type=click.IntRange(1), default=None, help="apo: prompts kept per round [default: 4].")
@click.option("--minibatch", type=click.IntRange(1), default=None,
              help="apo: training cases each beam prompt is scored on to find its failures [default: 64].")
@click.option("--gradients", type=click.IntRange(1), default=None,
              help="apo: textual gradients per beam prompt [default: 4].")
@click.option("--error-sample", type=click.IntRange(1), default=None,
              help="apo: failures shown to each gradient call [default: 4].")
@click.option("--paraphrases", type=click.IntRange(0), default=None,
              help="apo: Monte-Carlo paraphrases per edit [default: 2].")
@click.option("--max-successors", type=click.IntRange(1), default=None,
              help="apo: successors kept per parent [default: 8].")
@click.option("--bandit", type=click.Choice(BANDITS), default=None,
              help="apo: best-arm algorithm choosing the next beam [default: ucb].")
@click.option("--exploration", type=click.FloatRange(0), default=None,
              help="apo: UCB exploration constant c [default: 2.0].")
@click.option("--eval-budget", type=click.IntRange(1), default=None,
              help="apo: bandit pulls per round [default: 64].")
@click.option("--pull-size", type=click.IntRange(1), default=None,
              help="apo: training cases one pull scores [default: 32].")
@click.option("--depth", type=click.IntRange(1), default=None,
              help="dspy-copro: COPRO's rounds of proposals (its breadth is --candidates) [default: 2].")
@click.option("--trials", type=click.IntRange(1), default=None,
              help="dspy-mipro: MIPROv2's search trials (its candidates are --candidates) [default: 4].")
@click.option("--labeled-demos", type=click.IntRange(0), default=None,
              help="dspy-mipro, dspy-bootstrap: labelled demos per program; --n-demos sets the bootstrapped "
                   "ones [default: 4].")
@click.option("--max-metric-calls", type=click.IntRange(1), default=None,
              help="dspy-gepa: GEPA's budget of metric calls (one case under one prompt each) [default: 60].")
@click.option("--mode", type=click.Choice(sorted(MODES)), default=None,
              help="bpo: stable (1 rewrite at temperature 0.2) or aggressive (--samples rewrites at 0.9, the best "
                   "kept by the scorer) [default: stable].")
@click.option("--samples", type=click.IntRange(1), default=None,
              help=f"bpo: rewrites per step in aggressive mode [default: {MODES['aggressive'].samples}].")
@click.option("--feedback-groups", type=click.IntRange(0), default=None,
              help=f"bpo: feedback groups turned into pairs per step [default: {BpoStrategy().feedback_groups}].")
@click.option("--group-size", type=click.IntRange(1), default=None,
              help=f"bpo: wrong and right cases in each feedback group [default: {BpoStrategy().group_size} each].")
@click.option("--demonstrations", type=click.IntRange(0), default=None,
              help=f"bpo: stored pairs shown to the prompted rewriter [default: {BpoStrategy().demonstrations}].")
@click.option("--rewriter", type=click.Path(file_okay=False, exists=True), default=None,
              help="bpo: a fine-tuned rewriter directory (from `promptopt bpo train`) instead of the prompted "
                   "rewriter on --optimizer-model.")
@click.option("--language", type=click.Choice(sorted(META_TEXT)), default=None,
              help="Language of the task, used for the optimizer model's instructions [default: en].")
@click.option("--db", default=None, help=DB_HELP)
@click.option("--estimate", is_flag=True,
              help="Print the expected model calls (a judge's included), tokens and cost of this run, then stop "
                   "without calling any model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result as the last line.")
@click.option("--quiet", is_flag=True, help="No progress messages on stderr.")
def run(task, case_files, prompt_file, tools_file, strategy, steps, seed, model, base_url, api_key, optimizer_model,
        optimizer_base_url, optimizer_api_key, concurrency, cache, config_file, budget_calls, budget_tokens,
        budget_usd, budget_seconds, max_broken, alpha, arguments, evaluator_specs, all_must_pass, pattern, rubric,
        judge_model, judge_base_url, judge_api_key, n_demos, candidates, train_sample, history,
        exemplars, temperature, beam_width, minibatch, gradients, error_sample, paraphrases, max_successors, bandit,
        exploration, eval_budget, pull_size, depth, trials, labeled_demos, max_metric_calls, mode, samples,
        feedback_groups, group_size, demonstrations, rewriter, language, db, estimate, as_json, quiet) -> None:
    """Import cases, search for a better system prompt, and report seed vs. winner on held-out cases.

    The cases are split (train / validation / test, stratified by expected tool). Candidates are built
    from the training cases, accepted only if better on validation without breaking more than
    --max-broken previously-good cases, and the final table compares seed and winner on the test split
    with 95% confidence intervals and an exact McNemar test.
    """
    from promptopt.api import estimate as estimate_run
    from promptopt.api import optimize

    given = {"n_demos": n_demos, "candidates": candidates, "train_sample": train_sample, "history": history,
             "exemplars": exemplars, "temperature": temperature, "beam_width": beam_width, "minibatch": minibatch,
             "gradients": gradients, "error_sample": error_sample, "paraphrases": paraphrases,
             "max_successors": max_successors, "bandit": bandit, "exploration": exploration,
             "eval_budget": eval_budget, "pull_size": pull_size, "depth": depth, "trials": trials,
             "labeled_demos": labeled_demos, "max_metric_calls": max_metric_calls, "mode": mode, "samples": samples,
             "feedback_groups": feedback_groups, "group_size": group_size, "demonstrations": demonstrations,
             "rewriter": rewriter, "language": language}
    options = {name: value for name, value in given.items() if value is not None}
    accepted = strategy_parameters(strategy)
    if "language" not in accepted:
        options.pop("language", None)  # a task setting; only strategies that write text use it
    stray = [name for name in options if name not in accepted]
    if stray:
        flags = ", ".join("--" + name.replace("_", "-") for name in stray)
        raise click.UsageError(f"{flags} do(es) not apply to --strategy {strategy}")
    try:
        make_strategy(strategy, options)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        if estimate:
            expected = estimate_run(task=task, cases=case_files or None, prompt=prompt_file, tools=tools_file,
                                    strategy=strategy, steps=steps, seed=seed, model=model, base_url=base_url,
                                    config_file=config_file, evaluators=list(evaluator_specs) or None,
                                    all_must_pass=all_must_pass, pattern=pattern, rubric=rubric,
                                    judge_model=judge_model, judge_base_url=judge_base_url, **options)
            _print_estimate(expected, model or "the task model", as_json)
            return
        result = optimize(task=task, cases=case_files or None, prompt=prompt_file, tools=tools_file,
                          strategy=strategy, steps=steps, seed=seed, model=model, base_url=base_url, api_key=api_key,
                          optimizer_model=optimizer_model, optimizer_base_url=optimizer_base_url,
                          optimizer_api_key=optimizer_api_key, concurrency=concurrency, cache=cache,
                          config_file=config_file, db=db, max_calls=budget_calls, max_seconds=budget_seconds,
                          max_tokens=budget_tokens, max_usd=budget_usd, max_broken=max_broken, alpha=alpha,
                          fill_arguments=arguments, evaluators=list(evaluator_specs) or None,
                          all_must_pass=all_must_pass, pattern=pattern, rubric=rubric, judge_model=judge_model,
                          judge_base_url=judge_base_url, judge_api_key=judge_api_key, progress=_progress(quiet),
                          **options)
    except (CaseFileError, TaskFileError) as error:
        raise click.ClickException(f"nothing was imported:\n{error}") from None
    except EvaluatorError as error:
        raise click.UsageError(str(error)) from None
    except (ModelSettingsError, ConfigFileError, PriceFileError) as error:
        raise click.ClickException(str(error)) from None
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


def _print_estimate(expected, model: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(expected.to_json()))
        return
    cost = f"${expected.cost_usd:.4f}" if expected.price_known else f"unknown (no price for {model}; see --config)"
    judged = f" ({expected.judge_calls} of them the judge's)" if expected.judge_calls else ""
    click.echo(f"expected model calls: at most {expected.calls}{judged}\n"
               f"tokens: about {expected.tokens_in} in, {expected.tokens_out} out\n"
               f"cost at list price: {cost}")


@main.command()
@click.argument("run_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="md: as deployed (markers kept); txt: protection markers removed; json: prompt with scores. "
                   "Default: from the output file's extension, else md.")
@click.option("--db", default=None, help=DB_HELP)
def export(run_id, output, fmt, db) -> None:
    """Write the winning system prompt of RUN_ID."""
    if fmt is None:
        suffix = Path(output).suffix.lstrip(".") if output else ""
        fmt = suffix if suffix in FORMATS else "md"
    try:
        text = export_prompt(Store(db), run_id, fmt)
    except RunNotFound:
        raise click.ClickException(f"no run {run_id!r} in the store") from None
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output} ({fmt})", err=True)
    else:
        click.echo(text, nl=False)


@main.group()
def cases() -> None:
    """Import and inspect stored cases."""


@cases.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--task", type=click.Choice(sorted(TASKS)), default="tool-routing", show_default=True)
@click.option("--tools", "tools_file", type=click.Path(dir_okay=False),
              help="Tools the cases are validated against. Default: the task's bundled tools.")
@click.option("--db", default=None, help=DB_HELP)
def import_cases(files, task, tools_file, db) -> None:
    """Validate FILES (.jsonl or .csv) and import them, all or nothing; re-imports are deduplicated."""
    from promptopt.api import import_case_files

    store = Store(db)
    before = store.count_cases()
    try:
        tools = load_tools(tools_file) if tools_file else bundled_task(task).tools
        stored = import_case_files(store, files, tools)
    except (CaseFileError, TaskFileError) as error:
        raise click.ClickException(f"nothing was imported:\n{error}") from None
    new = store.count_cases() - before
    click.echo(f"{len(stored)} cases in {len(files)} file(s): {new} new, {len(stored) - new} already stored")


@cases.command("list")
@click.option("--label", type=click.Choice(["bad", "good"]), default=None)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--db", default=None, help=DB_HELP)
def list_cases(label, limit, db) -> None:
    """List stored cases: id, label, expected tool, query."""
    rows = Store(db).cases(label=label, limit=limit)
    for case in rows:
        query = case.query.replace("\n", " ")
        click.echo(f"{case.id:6d}  {case.label:4}  {case.expected.name:22}  {query[:70]}")
    if not rows:
        click.echo("no cases stored", err=True)


@cases.command("show")
@click.argument("case_id", type=int)
@click.option("--db", default=None, help=DB_HELP)
def show_case(case_id, db) -> None:
    """Show one case in full, as JSON."""
    case = Store(db).case(case_id)
    if case is None:
        raise click.ClickException(f"no case {case_id} in the store")
    click.echo(json.dumps({
        "id": case.id, "query": case.query, "context": list(case.context), "expected": case.expected.to_json(),
        "actual": case.actual.to_json() if case.actual else None, "label": case.label, "tags": list(case.tags),
        "source": case.source,
    }, ensure_ascii=False, indent=2))


@main.group()
def runs() -> None:
    """Inspect recorded runs."""


@runs.command("list")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--db", default=None, help=DB_HELP)
def list_runs(limit, db) -> None:
    """Recent runs: id, status, strategy, seed and winner test accuracy."""
    rows = Store(db).runs(limit)
    for row in rows:
        summary = row.summary or {}
        seed = (summary.get("seed") or {}).get("test_accuracy")
        winner = (summary.get("winner") or {}).get("test_accuracy")
        scores = f"{seed:.1%} -> {winner:.1%}" if seed is not None and winner is not None else ""
        click.echo(f"{row.id}  {row.created_at:%Y-%m-%d %H:%M}  {row.status:8}  {row.strategy:8}  {scores}")
    if not rows:
        click.echo("no runs stored", err=True)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--steps", "with_steps", is_flag=True,
              help="Also print each step's details: what the optimizer model was shown, what became of its samples.")
@click.option("--db", default=None, help=DB_HELP)
def show_run(run_id, as_json, with_steps, db) -> None:
    """A run's result table, computed from the store."""
    store = Store(db)
    try:
        report = run_report(store, run_id)
    except RunNotFound:
        raise click.ClickException(f"no run {run_id!r} in the store") from None
    if as_json:
        if with_steps:
            report = {**report, "step_details": [dict(step=s.step, **(s.details or {})) for s in store.steps(run_id)]}
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    click.echo(format_report(report))
    if with_steps:
        for step in store.steps(run_id):
            click.echo(f"\n=== step {step.step}: {step.message}")
            for key, value in (step.details or {}).items():
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                click.echo(f"--- {key}\n{text}")


@main.group()
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; the default answers only this machine.")
@click.option("--port", type=click.IntRange(0, 65535), default=8400, show_default=True, help="Port (0: any free).")
@click.option("--arguments/--no-arguments", default=True, show_default=True,
              help="Fill tool-call arguments by generation (slow on CPU); without, tool calls carry {}.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0, show_default=True,
              help="For testing clients: add this delay to every answer.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0, show_default=True,
              help="For testing clients: share of requests answered with an injected fault (429 with Retry-After, "
                   "500, a stall, a malformed body).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault draws.")
def serve(host, port, arguments, latency_ms, fault_rate, seed) -> None:
    """Serve the embedded model over the OpenAI chat-completions API.

    \b
    Any OpenAI client can then use the local model as `embedded`:
      promptopt serve --port 8400 &
      curl http://127.0.0.1:8400/v1/chat/completions -d '{"model": "embedded",
           "messages": [{"role": "user", "content": "hi"}]}'
      promptopt run --model embedded --base-url http://127.0.0.1:8400/v1

    Requests with `tools` are routed (a tool call, or plain content when no tool fits); others are generated.
    """
    from promptopt.server import ChatServer, EmbeddedResponder, FaultPlan

    responder = EmbeddedResponder(fill_arguments=arguments)
    server = ChatServer(responder, host, port, latency_s=latency_ms / 1000, faults=FaultPlan(rate=fault_rate, seed=seed),
                        log=lambda line: click.echo(line, err=True))
    click.echo(f"serving model 'embedded' at {server.base_url} (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def load_optimizer(model: str | None, base_url: str | None, api_key: str | None, config_file: str | None):
    """The optimizer-model backend from flags, config file and environment (like `promptopt run`'s)."""
    from promptopt.config import load_config
    from promptopt.models import load_model, resolve_model_settings
    from promptopt.models.pricing import load_prices

    config = load_config(config_file)
    settings = resolve_model_settings("optimizer_model", model, base_url, api_key, config)
    return load_model(settings, prices=load_prices(extra=config.get("prices")))


def _optimizer_options(command):
    """--optimizer-model, --optimizer-base-url, --optimizer-api-key and --config, as `promptopt run` has them."""
    for option in reversed([
        click.option("--optimizer-model", default=None,
                     help="Model that writes pairs and prompted rewrites; same choices as run's --model. "
                          "Default: config file, else embedded."),
        click.option("--optimizer-base-url", default=None, help="OpenAI-compatible endpoint of --optimizer-model."),
        click.option("--optimizer-api-key", default=None, help="Key for --optimizer-base-url (prefer the variable)."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="JSON config file (see `promptopt run --help`)."),
    ]):
        command = option(command)
    return command


@main.group()
def bpo() -> None:
    """BPO: feedback pairs and the rewriter trained on them.

    \b
    promptopt bpo pairs import prefs.jsonl    # preference data -> analysed, filtered pairs
    promptopt bpo pairs export -o pairs.jsonl # kept pairs, chat format
    promptopt bpo train -o rewriter/          # fine-tune the embedded SmolLM2 on the stored pairs
    promptopt bpo rewrite system.md --rewriter rewriter/
    promptopt run --strategy bpo --rewriter rewriter/
    """


@bpo.group()
def pairs() -> None:
    """List, export and import BPO pairs."""


@pairs.command("list")
@click.option("--run", "run_id", default=None, help="Only this run's pairs (default: all).")
@click.option("--all", "with_rejected", is_flag=True, help="Also the pairs the filters rejected.")
@click.option("--db", default=None, help=DB_HELP)
def list_pairs(run_id, with_rejected, db) -> None:
    """Stored pairs: id, run, source, kept or why not, and the start of the improved prompt."""
    rows = Store(db).bpo_pairs(run_id, kept_only=not with_rejected)
    for row in rows:
        fate = "kept" if row.kept else f"rejected: {row.rejection}"
        click.echo(f"{row.id:6d}  {row.run_id or '-':12}  {row.source:17}  {fate[:50]:50}  "
                   f"{row.optimized[:60].replace(chr(10), ' ')}")
    if not rows:
        click.echo("no pairs stored", err=True)


@pairs.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@click.option("--run", "run_id", default=None, help="Only this run's pairs (default: all).")
@click.option("--db", default=None, help=DB_HELP)
def export_pairs(output, run_id, db) -> None:
    """Kept pairs as JSON Lines in chat format (system, user: original, assistant: optimized)."""
    from promptopt.optimizer.strategies.bpo.pairs import export_jsonl

    rows = Store(db).bpo_pairs(run_id)
    text = export_jsonl([(r.original, r.optimized) for r in rows])
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(rows)} pair(s) to {output}", err=True)
    else:
        click.echo(text, nl=False)


@pairs.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@_optimizer_options
@click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True,
              help="Longest analysis and rewrite the optimizer model may write.")
@click.option("--db", default=None, help=DB_HELP)
def import_pairs(file, optimizer_model, optimizer_base_url, optimizer_api_key, config_file, max_tokens, db) -> None:
    """Turn preference data into pairs: FILE holds one {"prompt", "good", "bad"} object a line (optional
    "request"); the optimizer model analyses each and writes an improved prompt; pairs are filtered and stored.
    A file with any problem imports nothing."""
    from promptopt.optimizer.strategies.bpo.pairs import construct_pairs, read_preferences

    try:
        groups = read_preferences(file)
    except CaseFileError as error:
        raise click.ClickException(f"nothing was imported:\n{error}") from None
    store = Store(db)
    try:
        model = load_optimizer(optimizer_model, optimizer_base_url, optimizer_api_key, config_file)
    except (ModelSettingsError, ConfigFileError, PriceFileError) as error:
        raise click.ClickException(str(error)) from None

    def ask(requests, temperature, tokens):
        completions = model.generate_many(requests, temperature=temperature, max_tokens=tokens, role="optimizer")
        store.add_calls(None, [c.record for c in completions])
        return completions

    made = construct_pairs(groups, ask, [], max_tokens=max_tokens)
    store.add_bpo_pairs(None, made)
    kept = sum(p.kept for p in made)
    click.echo(f"{len(groups)} preference(s): {kept} pair{'s' if kept != 1 else ''} kept, {len(made) - kept} rejected")
    for pair in made:
        if not pair.kept:
            click.echo(f"  rejected: {pair.rejection}", err=True)


@bpo.command()
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to save the rewriter to (model, tokenizer, rewriter.json).")
@click.option("--run", "run_id", default=None, help="Train on this run's kept pairs (default: all kept pairs).")
@click.option("--pairs", "pairs_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Train on an exported chat-format JSONL file instead of the store.")
@click.option("--base", type=click.Path(file_okay=False, exists=True), default=None,
              help="Model directory to start from [default: the embedded SmolLM2's fp32 weights].")
@click.option("--epochs", type=click.IntRange(1), default=1, show_default=True, help="Passes over the pairs.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Optimizer steps (overrides --epochs).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Learning rate [default: 1e-3 LoRA, 5e-5 full].")
@click.option("--max-length", type=click.IntRange(16), default=512, show_default=True,
              help="Tokens per training sequence (longer ones are cut).")
@click.option("--lora/--full", default=True, show_default=True,
              help="LoRA (rank 8 on the attention projections, merged before saving; ~4x faster per step on CPU) "
                   "or a full fine-tune.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--db", default=None, help=DB_HELP)
def train(output_dir, run_id, pairs_file, base, epochs, steps, lr, max_length, lora, seed, db) -> None:
    """Fine-tune a small causal LM on BPO pairs (CPU, batch size 1), printing the loss as it goes."""
    from promptopt.optimizer.strategies.bpo.pairs import read_chat_pairs
    from promptopt.optimizer.strategies.bpo.rewriter import train_rewriter

    if pairs_file:
        try:
            data = read_chat_pairs(pairs_file)
        except CaseFileError as error:
            raise click.ClickException(f"cannot read the pairs:\n{error}") from None
    else:
        data = [(r.original, r.optimized) for r in Store(db).bpo_pairs(run_id)]
    if not data:
        raise click.ClickException("no kept pairs to train on (see `promptopt bpo pairs list --all`)")
    try:
        result = train_rewriter(data, output_dir, base=base, steps=steps, epochs=epochs, lr=lr,
                                max_length=max_length, lora=lora, seed=seed, progress=_progress(False))
    except (RuntimeError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"start loss {result.start_loss:.4f}, end loss {result.end_loss:.4f} after {result.steps} steps "
               f"({result.seconds:.0f}s); rewriter saved to {result.output_dir}")


@bpo.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the rewrite here (aggressive mode: FILE.1.EXT, FILE.2.EXT ...); default: stdout.")
@click.option("--rewriter", type=click.Path(file_okay=False, exists=True), default=None,
              help="Fine-tuned rewriter directory; default: the prompted rewriter on --optimizer-model.")
@_optimizer_options
@click.option("--mode", type=click.Choice(sorted(MODES)), default="stable", show_default=True,
              help="stable: one rewrite at low temperature; aggressive: several at a higher one (all valid ones "
                   "are written: choosing among them needs cases, which `promptopt run --strategy bpo` has).")
@click.option("--samples", type=click.IntRange(1), default=None, help="Rewrites in aggressive mode [default: 4].")
@click.option("--demonstrations", type=click.IntRange(0), default=2, show_default=True,
              help="Stored pairs shown to the prompted rewriter.")
@click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True,
              help="Longest rewrite the model may write.")
@click.option("--tools", "tools_file", type=click.Path(dir_okay=False), default=None,
              help="Tools every rewrite must still name where FILE names them [default: the bundled task's].")
@click.option("--db", default=None, help=DB_HELP)
def rewrite(file, output, rewriter, optimizer_model, optimizer_base_url, optimizer_api_key, config_file, mode,
            samples, demonstrations, max_tokens, tools_file, db) -> None:
    """Rewrite the system prompt in FILE with a BPO rewriter; invalid rewrites (protected region edited, a tool
    dropped, too long) are refused."""
    from promptopt.optimizer.strategies.bpo.rewriter import Mode, load_rewriter, prompted_rewriter
    from promptopt.optimizer.candidates import validation_problem
    from promptopt.tasks.tool_routing import ToolRoutingTask

    original = Path(file).read_text(encoding="utf-8")
    names = ToolRoutingTask(tools=load_tools(tools_file) if tools_file else bundled_task("tool-routing").tools).tool_names
    if rewriter:
        chosen = load_rewriter(rewriter)
    else:
        try:
            model = load_optimizer(optimizer_model, optimizer_base_url, optimizer_api_key, config_file)
        except (ModelSettingsError, ConfigFileError, PriceFileError) as error:
            raise click.ClickException(str(error)) from None
        stored = [(r.original, r.optimized) for r in Store(db).bpo_pairs()]
        chosen = prompted_rewriter(model, stored, original, demonstrations)
    settings = MODES[mode] if mode == "stable" else Mode(samples or MODES[mode].samples, MODES[mode].temperature)
    texts, problems = [], []
    for completion in chosen.rewrite(original, settings, max_tokens):
        problem = completion.error or validation_problem(completion.text, original, names)
        if problem:
            problems.append(problem)
        elif completion.text not in texts:
            texts.append(completion.text)
    for problem in problems:
        click.echo(f"rewrite refused: {problem}", err=True)
    if not texts:
        raise click.ClickException(f"no valid rewrite from the {chosen.kind} rewriter ({len(problems)} refused)")
    if output and len(texts) == 1:
        Path(output).write_text(texts[0], encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    elif output:
        target = Path(output)
        for index, text in enumerate(texts, start=1):
            target.with_suffix(f".{index}{target.suffix}").write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(texts)} rewrites: {target.with_suffix(f'.1{target.suffix}')} ...", err=True)
    else:
        for index, text in enumerate(texts, start=1):
            if len(texts) > 1:
                click.echo(f"--- rewrite {index} of {len(texts)}")
            click.echo(text)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
