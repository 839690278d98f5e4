"""`promptopt report RUN_ID`: the run's self-contained HTML report (also what `promptopt run --report` writes)."""
from __future__ import annotations

from pathlib import Path

import click

from promptopt.cli.shared import db_option, progress_options, user_errors
from promptopt.progress import Progress
from promptopt.runs.report import full_run_id
from promptopt.runs.store import Store


@click.command()
@click.argument("run_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="HTML file to write (default: report-RUN_ID.html; - for stdout).")
@db_option
@progress_options
def report(run_id, output, db, progress) -> None:
    """Write RUN_ID's report as one HTML file that opens offline: result table, search trajectory, confusion
    matrices, every test case seed vs. winner (filterable), the prompt diff and per-evaluator scores."""
    with user_errors():
        store = Store(db)
        run_id = full_run_id(store, run_id)
        write_report(store, run_id, output or f"report-{run_id}.html", progress)


def write_report(store: Store, run_id: str, path: str, progress: Progress) -> None:
    """Render the report of `run_id` and write it to `path` (`-`: stdout), saying where it went."""
    from promptopt.runs.html_report import render_report

    progress(f"building the report of run {run_id}")
    text = render_report(store, run_id)
    write_html(text, path, progress)


def write_html(text: str, path: str, progress: Progress) -> None:
    """Write an HTML page to `path` (`-`: stdout); a file that cannot be written is a one-line error."""
    if path == "-":
        click.echo(text, nl=False)
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror or error}") from None
    progress(f"wrote {path} ({len(text.encode('utf-8')) // 1024} KB): open it in any browser, no server needed")
