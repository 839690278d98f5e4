"""`promptopt runs compare` on real SQLite stores, with runs made against a scripted OpenAI-compatible endpoint:
runs over the same cases side by side (text, --json, -o HTML), and the one-line refusals (a missing run, runs
without a common test case)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promptopt.api import optimize
from promptopt.cli import main
from promptopt.runs.report import run_report
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter
from tests.html_tables import external_references, table_rows
from tests.scripted_runs import scripted_task
from tests.support import write_jsonl


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three finished runs in one store: `short` and `long` over the same cases and seed (one search step vs.
    three), `other` over other cases (the same requests reworded); the store's URL and each run's id."""
    folder = tmp_path_factory.mktemp("compare")
    case_file, expected = scripted_task(folder, every=3)
    records = [json.loads(line) for line in case_file.read_text(encoding="utf-8").splitlines()]
    other_file = write_jsonl(folder / "other.jsonl", [{**r, "query": r["query"] + " (again)"} for r in records])
    db = f"sqlite:///{folder / 'store.db'}"
    with pytest.MonkeyPatch.context() as monkeypatch, ChatServer(ExamplesRouter(expected)) as server:
        monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(folder / "response-cache"))
        endpoint = {"model": "scripted", "base_url": server.base_url, "api_key": "sk-test", "db": db}
        short = optimize(cases=[case_file], steps=1, n_demos=3, **endpoint).run_id
        long = optimize(cases=[case_file], steps=3, **endpoint).run_id
        other = optimize(cases=[other_file], steps=1, **endpoint).run_id
    return {"db": db, "short": short, "long": long, "other": other}


def compare(db, *args):
    return CliRunner().invoke(main, ["runs", "compare", *args, "--db", db])


def test_runs_over_the_same_cases_are_compared_on_their_whole_test_split(runs):
    result = compare(runs["db"], runs["short"], runs["long"], "--json")
    assert result.exit_code == 0, result.output
    compared = json.loads(result.stdout)
    store = Store(runs["db"])
    reports = [run_report(store, run_id) for run_id in (runs["short"], runs["long"])]
    assert compared["common_test_cases"] == reports[0]["test_cases"] == reports[1]["test_cases"]
    for row, report in zip(compared["runs"], reports):
        assert row["accuracy"] == report["winner"]["test_accuracy"]
        assert row["model_calls"] == report["model_calls"] and row["cost_usd"] == report["cost_usd"]
        assert row["wall_seconds"] > 0
    first, second = compared["runs"]
    assert first["p_value"] is None and 0 < second["p_value"] <= 1
    assert second["passed"] - first["passed"] == second["better"] - second["worse"]
    assert second["model_calls"] > first["model_calls"]  # three steps cost more than one


def test_text_table_names_each_run_with_its_accuracy_and_paired_p(runs):
    result = compare(runs["db"], runs["short"], runs["long"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    compared = json.loads(compare(runs["db"], runs["short"], runs["long"], "--json").stdout)
    total = compared["common_test_cases"]
    assert lines[0].startswith(f"2 runs on the {total} test cases they share")
    header = lines[2].split()
    assert header[:4] == ["run", "strategy", "model", "winner"] and "paired" in header and "wall" in header
    for line, row in zip(lines[3:], compared["runs"]):
        assert line.startswith(row["run_id"]) and f"({row['passed']}/{total})" in line
    assert f"+{compared['runs'][1]['better']}/-{compared['runs'][1]['worse']}" in lines[4]


def test_html_page_holds_the_same_table_and_fetches_nothing(runs, tmp_path):
    out = tmp_path / "compare.html"
    result = compare(runs["db"], runs["short"], runs["long"], "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    rows = table_rows(page, "compare-table")
    text_rows = result.stdout.splitlines()[3:]
    assert [row["cells"][0] for row in rows] == [runs["short"], runs["long"]]
    for row, line in zip(rows, text_rows):
        assert line.split() == " ".join(row["cells"]).split()
    assert external_references(page) == [] and "<script" not in page


def test_a_missing_run_is_a_one_line_error(runs):
    result = compare(runs["db"], runs["short"], "nope")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: no run 'nope' in the store"]


def test_runs_without_a_common_test_case_are_refused(runs):
    result = compare(runs["db"], runs["short"], runs["other"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: runs {runs['short']}, {runs['other']} share no test case")


def test_one_run_alone_is_refused(runs):
    result = compare(runs["db"], runs["short"])
    assert result.exit_code == 1 and "give at least two runs to compare" in result.output
