"""Bad input is refused with its file and line (or the flag that gave it) before anything is written, and SQLite
and PostgreSQL refuse exactly the same input: CSV rows that do not fit their header, unknown or repeated JSON
fields, JSON that would crash the parser, and the texts, numbers and model names one store would keep and the
other fail on halfway through an import or a run."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.store import Store
from tests.support import write_jsonl

CSV_HEADER = "query,expected_tool,expected_arguments\n"
CSV_ROW = 'where is my order,get_order_status,"{""order_id"": ""FM1""}"\n'


def imported(path, db: str, *args: str):
    """`promptopt cases import PATH ARGS` against the store at `db`."""
    return CliRunner().invoke(main, ["cases", "import", str(path), *args, "--db", db])


def refused(result, db: str) -> str:
    """The output of a command that refused its input with a one-line error (no traceback) and wrote nothing."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.startswith("Error: "), result.output
    assert Store(db).count_cases() == 0 and Store(db).runs() == []
    return result.output


@pytest.mark.parametrize(
    "rows, needle",
    [
        ('"hi there,none,\nthanks,none,\nbye,none,\n',
         ":3: a quote opened in this row is never closed (the file ends at line 5)"),
        ("hello\n", ":3: 2 fewer field(s) than the header's 3 columns (a missing comma?)"),
        ("thanks,none\n", ":3: 1 fewer field(s) than the header's 3 columns"),
    ],
    ids=["unterminated-quote", "short-row", "one-cell-short"],
)
def test_csv_rows_that_do_not_fit_are_refused_with_their_line(tmp_path, rows, needle):
    path = tmp_path / "cases.csv"
    path.write_text(CSV_HEADER + CSV_ROW + rows, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert f"{path}{needle}" in refused(imported(path, db), db)


def test_a_short_row_in_a_labels_csv_is_refused_with_its_line(tmp_path):
    log = write_jsonl(tmp_path / "log.jsonl", [{
        "messages": [{"role": "user", "content": "where is my order FM1?"}],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Let me check."}}]}])
    labels = tmp_path / "labels.csv"
    labels.write_text("record,turn,expected_tool,expected_arguments\n1,1,get_order_status\n", encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    output = refused(imported(log, db, "--labels", str(labels)), db)
    assert f"{labels}:2: 1 fewer field(s) than the header's 4 columns" in output
