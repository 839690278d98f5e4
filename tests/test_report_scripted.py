"""HTML reports of runs against a scripted endpoint: a run stopped with Ctrl-C (a real process against a hanging
endpoint) says it is not finished and how to resume it, `promptopt run --resume RUN_ID --report FILE` writes the
finished run's report, and a run scored by several evaluators shows each one's scores."""
from __future__ import annotations

from click.testing import CliRunner

from promptopt.api import optimize
from promptopt.cli import main
from promptopt.runs.html_report import render_report
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter
from tests.html_tables import table_rows
from tests.scripted_runs import Stalling, interrupted_at_first_call, run_command, scripted_task


def test_an_interrupted_runs_report_says_so_and_resuming_writes_the_finished_one(tmp_path):
    case_file, expected = scripted_task(tmp_path, every=6)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    page = tmp_path / "report.html"
    responder = Stalling(expected)
    with ChatServer(responder) as server:
        interrupted_at_first_call(run_command(db, case_file, server.base_url, "--report", str(page)), responder)
        (run,) = Store(db).runs()
        assert run.status == "interrupted" and not page.exists()
        unfinished = CliRunner().invoke(main, ["report", run.id, "-o", "-", "--db", db, "-q"]).stdout
        assert f"promptopt run --resume {run.id}" in unfinished and "no seed-vs-winner verdict" in unfinished
        assert 'id="result-table"' not in unfinished
        result = CliRunner().invoke(main, ["run", "--resume", run.id, "--db", db, "--report", str(page), "--json"])
    assert result.exit_code == 0, result.output
    assert f"wrote {page}" in result.stderr
    text = page.read_text(encoding="utf-8")
    assert f"<h1>promptopt run {run.id}</h1>" in text and " · finished · " in text
    assert '<section id="cases">' in text


def test_a_run_scored_by_several_evaluators_shows_each_ones_scores(tmp_path):
    case_file, expected = scripted_task(tmp_path, every=8)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with ChatServer(ExamplesRouter(expected)) as server:
        result = optimize(cases=[case_file], model="scripted", base_url=server.base_url, api_key="sk-test", db=db,
                          steps=1, evaluators=["tool_call", "json_schema"])
    rows = table_rows(render_report(Store(db), result.run_id), "evaluator-table")
    breakdown = result.report["evaluators"]
    assert [row["cells"][0] for row in rows] == list(breakdown) == ["tool_call", "json_schema"]
    for row, scores in zip(rows, breakdown.values()):
        assert row["cells"][1:] == [f"{scores['seed']['mean_score']:.3f}", f"{100 * scores['seed']['pass_rate']:.1f}%",
                                    f"{scores['winner']['mean_score']:.3f}",
                                    f"{100 * scores['winner']['pass_rate']:.1f}%"]
