"""`promptopt export` and `promptopt runs list|show|compare|delete`: the recorded runs, the prompt a finished one
found, and finished runs side by side. Every RUN_ID may be given by a prefix only one run's id starts with."""
from __future__ import annotations

import json
from pathlib import Path

import click

from promptopt.cli.report import write_html
from promptopt.cli.setting_flags import setting_option
from promptopt.cli.shared import db_option, progress_options, user_errors
from promptopt.run_settings import SETTINGS
from promptopt.runs.compare import COLUMNS, NUMERIC_COLUMNS, Comparison, compare_runs
from promptopt.runs.export import FORMATS, export_prompt
from promptopt.runs.mlflow_tracking import REGISTRY_PREFIX, register_prompt, tracking_uri
from promptopt.runs.report import format_report, full_run_id, run_provenance, run_report
from promptopt.runs.store import Store
from promptopt.runs.tables import RunRow
from promptopt.runs.writer_lock import hold_writers, run_status


@click.command()
@click.argument("run_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="md: as deployed (markers kept); txt: protection markers removed; json: prompt with scores. "
                   "Default: from the output file's extension, else md.")
@click.option("--incumbent", is_flag=True,
              help="For a run that did not finish (interrupted, failed): write its incumbent, the best prompt it "
                   "had accepted so far, instead of refusing.")
@click.option("--to", "destination", default=None, metavar=f"{REGISTRY_PREFIX}NAME",
              help="Instead, register the prompt as a new version of prompt NAME in MLflow's Prompt Registry at "
                   "--track, tagged with the run id, test accuracy and CI, p, model and protected regions.")
@setting_option(SETTINGS["track"], help="MLflow tracking URI of the registry for --to (default: the config file's "
                                        "`track`, then $MLFLOW_TRACKING_URI).")
@db_option
def export(run_id, output, fmt, incumbent, destination, track, db) -> None:
    """Write the winning system prompt of RUN_ID (a run that did not finish: refused, unless --incumbent)."""
    if fmt is None:
        suffix = Path(output).suffix.lstrip(".") if output else ""
        fmt = suffix if suffix in FORMATS else "md"
    if destination and output:
        raise click.UsageError("--to and -o/--output cannot be given together")
    with user_errors():
        store = Store(db)
        run_id = full_run_id(store, run_id)
        if destination:
            name, version = register_prompt(store, run_id, destination, tracking_uri(track), fmt, incumbent)
            click.echo(f"registered {REGISTRY_PREFIX}{name}/{version} from run {run_id}")
            return
        text = export_prompt(store, run_id, fmt, incumbent)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output} ({fmt})", err=True)
    else:
        click.echo(text, nl=False)


@click.group()
def runs() -> None:
    """Inspect recorded runs."""


@runs.command("list")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per run, one per line.")
@db_option
def list_runs(limit, as_json, db) -> None:
    """Recent runs, newest first: id, start, status, strategy, task model, cases, seed -> winner test accuracy."""
    with user_errors():
        store = Store(db)
        rows = store.runs(limit)
        counts = store.case_counts([row.id for row in rows])
        listed = [_listed(store, row, counts.get(row.id, 0)) for row in rows]
    if as_json:
        for entry in listed:
            click.echo(json.dumps(entry, ensure_ascii=False))
        return
    if not rows:
        click.echo("no runs stored", err=True)
        return
    click.echo(f"{'RUN':12}  {'STARTED':16}  {'STATUS':11}  {'STRATEGY':8}  {'MODEL':24}  {'CASES':>5}  TEST ACCURACY")
    for entry in listed:
        seed, winner = entry["seed_test_accuracy"], entry["winner_test_accuracy"]
        scores = f"{seed:.1%} -> {winner:.1%}" if seed is not None and winner is not None else ""
        click.echo(f"{entry['run_id']:12}  {entry['started'][:16].replace('T', ' '):16}  {entry['status']:11}  "
                   f"{entry['strategy']:8}  {(entry['model'] or '')[:24]:24}  {entry['cases']:>5}  {scores}")


def _listed(store: Store, row: RunRow, cases: int) -> dict:
    """One run as `runs list` shows it."""
    summary = row.summary or {}
    return {"run_id": row.id, "started": row.created_at.isoformat(), "status": run_status(store, row),
            "strategy": row.strategy, "task": row.task, "model": (row.config or {}).get("model"), "cases": cases,
            "seed_test_accuracy": (summary.get("seed") or {}).get("test_accuracy"),
            "winner_test_accuracy": (summary.get("winner") or {}).get("test_accuracy")}


@runs.command("delete")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
@click.option("--yes", is_flag=True, help="Delete without asking.")
@db_option
def delete_runs(run_ids, yes, db) -> None:
    """Delete runs and everything they stored (candidates, scores, steps, model calls); their cases stay. A run
    that is still running is refused (stop it first)."""
    with user_errors():
        store = Store(db)
        ids = [full_run_id(store, given) for given in run_ids]
        for run_id in ids:
            if run_status(store, store.run(run_id)) == "running":
                raise click.ClickException(f"run {run_id} is running: stop it first; nothing was deleted")
        if not yes:
            click.confirm(f"delete {len(ids)} run(s) from {store.url}?", abort=True, err=True)
        with hold_writers(store, ids):
            for run_id in ids:
                store.delete_run(run_id)
    click.echo(f"deleted {len(ids)} run(s)")


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--steps", "with_steps", is_flag=True,
              help="Also print each step's details: what the optimizer model was shown, what became of its samples.")
@db_option
def show_run(run_id, as_json, with_steps, db) -> None:
    """A run's result table, computed from the store."""
    store = Store(db)
    with user_errors():
        run_id = full_run_id(store, run_id)
        report = run_report(store, run_id)
    if as_json:
        report = {**report, "provenance": run_provenance(store.run(run_id))}
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


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_A RUN_B [RUN...]")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as one JSON object.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Also write the table as a self-contained HTML page to this file.")
@db_option
@progress_options
def compare(run_ids, as_json, output, db, progress) -> None:
    """Finished runs' winners side by side on the test cases the runs share: accuracy with 95% CI, the paired
    exact McNemar p against the first run's winner, calls, cost and wall time."""
    store = Store(db)
    with user_errors():
        comparison = compare_runs(store, [full_run_id(store, given) for given in run_ids])
    if output:
        from promptopt.runs.html_compare import render_comparison

        write_html(render_comparison(comparison), output, progress)
    if as_json:
        click.echo(json.dumps(comparison.to_json(), ensure_ascii=False))
    else:
        click.echo(format_comparison(comparison))


def format_comparison(comparison: Comparison) -> str:
    """The comparison as an aligned text table, with how many test cases it is on."""
    rows = [list(COLUMNS), *comparison.rows()]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    lines = [f"{len(comparison.runs)} runs on the {len(comparison.common_case_ids)} test cases they share "
             "(+/-: cases right where the first run's winner is wrong, and the other way round)", ""]
    for row in rows:
        cells = [cell.rjust(width) if column in NUMERIC_COLUMNS else cell.ljust(width)
                 for column, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
