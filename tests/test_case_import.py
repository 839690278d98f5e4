"""Case files: what imports, what is refused (with file, line and field), and that a refusal writes nothing."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from promptopt.api import import_case_files
from promptopt.cli import main
from promptopt.runs.case_import import CaseFileError, read_cases
from promptopt.runs.store import Store
from tests.support import case_record, write_jsonl


def test_bundled_cases_meet_the_task_description(task):
    cases = [c for path in task.case_files for c in read_cases(path, task.tools)]
    labels = Counter(c.label for c in cases)
    assert labels["bad"] >= 200 and labels["good"] >= 200
    assert all(c.actual != c.expected for c in cases if c.label == "bad")
    assert all(c.actual == c.expected for c in cases if c.label == "good")
    hard_negatives = [c for c in cases if "hard-negative" in c.tags]
    assert len(hard_negatives) >= len(cases) / 5
    assert all(c.expected.is_none for c in hard_negatives)
    assert sum(bool(c.context) for c in cases) >= 40
    languages = Counter(t for c in cases for t in c.tags if t in ("zh", "en"))
    assert languages["zh"] >= 100 and languages["en"] >= 100
    assert {c.expected.name for c in cases} == {*(t["function"]["name"] for t in task.tools), "none"}
    assert 8 <= len(task.tools) <= 12
    assert "<!-- protected -->" in task.seed_prompt


def test_import_dedupes_by_content(tmp_path, store, task):
    path = write_jsonl(tmp_path / "cases.jsonl", [case_record("where is my order", "get_order_status"),
                                                  case_record("hi there", None, label="good")])
    first = import_case_files(store, [path], task.tools)
    second = import_case_files(store, [path], task.tools)
    assert [c.id for c in first] == [c.id for c in second]
    assert store.count_cases() == 2
    assert first[1].expected.is_none and first[1].label == "good"


def test_csv_import(tmp_path, store, task):
    path = tmp_path / "cases.csv"
    path.write_text(
        "query,context,expected_tool,expected_arguments,actual_tool,label,tags\n"
        '我的订单到哪了,,get_order_status,"{""order_id"": ""FM1""}",check_delivery_slots,bad,zh;multi-turn\n'
        "thanks!,,,,,good,en\n",
        encoding="utf-8",
    )
    cases = import_case_files(store, [path], task.tools)
    assert cases[0].expected.arguments == {"order_id": "FM1"}
    assert cases[0].actual.name == "check_delivery_slots" and cases[0].tags == ("zh", "multi-turn")
    assert cases[1].expected.is_none


def test_label_defaults_from_actual(tmp_path, task):
    right = case_record("hi", None, actual={"tool": None, "arguments": {}})
    wrong = case_record("my order?", "get_order_status", actual={"tool": "find_stores"})
    del right["label"], wrong["label"]
    cases = read_cases(write_jsonl(tmp_path / "c.jsonl", [right, wrong]), task.tools)
    assert [c.label for c in cases] == ["good", "bad"]


GOOD = case_record("any coupons today?", "get_promotions")


@pytest.mark.parametrize(
    "content, line, needle",
    [
        (json.dumps(GOOD) + "\n{not json\n", 2, "invalid JSON"),
        (json.dumps(GOOD) + "\n" + json.dumps({"expected": {"tool": None}}) + "\n", 2, "query: missing"),
        (json.dumps({"query": "hello"}) + "\n", 1, "expected: missing"),
        (json.dumps(case_record("book me a taxi", "call_taxi")) + "\n", 1, "expected.tool: unknown tool 'call_taxi'"),
        (json.dumps(case_record("x", "get_order_status", expected={"tool": "get_order_status",
                                                                     "arguments": {"colour": "red"}})) + "\n",
         1, "expected.arguments: get_order_status has no parameter 'colour'"),
        (json.dumps(dict(GOOD, label="meh")) + "\n", 1, "label: must be one of bad, good"),
        (json.dumps(dict(GOOD, context="earlier chat")) + "\n", 1, "context: must be a list"),
    ],
)
def test_malformed_jsonl_names_file_line_and_field(tmp_path, store, task, content, line, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    import_case_files(store, [write_jsonl(tmp_path / "ok.jsonl", [case_record("hello", None)])], task.tools)
    with pytest.raises(CaseFileError) as raised:
        import_case_files(store, [path], task.tools)
    assert f"{path}:{line}: " in str(raised.value)
    assert needle in str(raised.value)
    assert store.count_cases() == 1


def test_empty_file_is_refused(tmp_path, store, task):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(CaseFileError, match="holds no cases"):
        import_case_files(store, [path], task.tools)
    assert store.count_cases() == 0


def test_wrong_encoding_names_the_line(tmp_path, store, task):
    path = tmp_path / "gbk.jsonl"
    path.write_bytes((json.dumps(GOOD) + "\n").encode() + json.dumps(case_record("我的订单", None),
                                                                     ensure_ascii=False).encode("gbk"))
    with pytest.raises(CaseFileError) as raised:
        import_case_files(store, [path], task.tools)
    assert f"{path}:2: not UTF-8" in str(raised.value)
    assert store.count_cases() == 0


def test_one_bad_file_imports_nothing_from_the_others(tmp_path, store, task):
    ok = write_jsonl(tmp_path / "ok.jsonl", [GOOD])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match="must be a JSON object"):
        import_case_files(store, [ok, bad], task.tools)
    assert store.count_cases() == 0


def test_cli_import_reports_errors_and_leaves_store_unchanged(tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    ok = write_jsonl(tmp_path / "ok.jsonl", [GOOD, case_record("hi", None)])
    result = runner.invoke(main, ["cases", "import", str(ok), "--db", db])
    assert result.exit_code == 0, result.output
    assert "2 new" in result.output
    bad = write_jsonl(tmp_path / "bad.jsonl", [GOOD, case_record("taxi please", "call_taxi")])
    result = runner.invoke(main, ["cases", "import", str(bad), "--db", db])
    assert result.exit_code == 1
    assert f"{bad}:2: expected.tool: unknown tool" in result.output
    listed = runner.invoke(main, ["cases", "list", "--db", db])
    assert len(listed.output.strip().splitlines()) == 2
    shown = runner.invoke(main, ["cases", "show", "1", "--db", db])
    assert json.loads(shown.output)["expected"]["tool"] == "get_promotions"


LONG_CONTEXT = [{"role": "user", "content": "y" * 20_000}, {"role": "assistant", "content": "z" * 12_001}]


@pytest.mark.parametrize(
    "record, needle",
    [
        (case_record("x" * 8_001, None), "query: too long: 8,001 characters, the limit is 8,000"),
        (case_record("hi", None, context=LONG_CONTEXT), "context: too long: its messages hold 32,001 characters"),
        (case_record("where\x00 is it", None), "query: contains a NUL character"),
        (case_record("hi", None, context=[{"role": "user", "content": "a"}, {"role": "user", "content": "b\x00"}]),
         "context[1].content: contains a NUL character"),
        (case_record("my order?", "get_order_status", expected={"tool": "get_order_status",
                                                                "arguments": {"order_id": "FM\x001"}}),
         "expected.arguments.order_id: contains a NUL character"),
        (dict(GOOD, source="crm\x00"), "source: contains a NUL character"),
    ],
    ids=["long-query", "long-context", "nul-query", "nul-context", "nul-argument", "nul-source"],
)
def test_over_long_or_nul_text_is_refused(tmp_path, store, task, record, needle):
    path = write_jsonl(tmp_path / "big.jsonl", [GOOD, record])
    with pytest.raises(CaseFileError) as raised:
        import_case_files(store, [path], task.tools)
    assert f"{path}:2: {needle}" in str(raised.value)
    assert store.count_cases() == 0


def test_texts_at_the_limits_import(tmp_path, store, task):
    context = [{"role": "user", "content": "y" * 20_000}, {"role": "assistant", "content": "z" * 12_000}]
    path = write_jsonl(tmp_path / "edge.jsonl", [case_record("x" * 8_000, None, context=context)])
    assert len(import_case_files(store, [path], task.tools)) == 1


CSV_HEADER = "query,expected_tool,expected_arguments\n"
CSV_ROW = 'where is my order,get_order_status,"{""order_id"": ""FM1""}"\n'


@pytest.mark.parametrize(
    "content, needle",
    [
        ("query,expected_tool,expected_args\n" + CSV_ROW,
         ":1: unknown column 'expected_args'; the known columns are: query, context, expected_tool, "),
        (CSV_HEADER + CSV_ROW + 'my order FM2,get_order_status,{"order_id": "FM2", "note": "x"}\n',
         ":3: 1 more field(s) than the header's 3 columns"),
        ("query,expected_tool,query\n" + CSV_ROW, ":1: column 'query' appears more than once"),
        (CSV_HEADER + CSV_ROW + f"{'x' * 9_000},,\n", ":3: query: too long: 9,000 characters"),
        (CSV_HEADER + f"{'x' * 1_500_000},,\n", ":2: cannot read CSV: field larger than field limit"),
    ],
    ids=["unknown-column", "extra-field", "repeated-column", "long-query", "huge-cell"],
)
def test_malformed_csv_names_file_and_line(tmp_path, store, task, content, needle):
    path = tmp_path / "cases.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CaseFileError) as raised:
        import_case_files(store, [path], task.tools)
    assert f"{path}{needle}" in str(raised.value)
    assert store.count_cases() == 0


def test_cli_refuses_a_huge_query(tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    huge = write_jsonl(tmp_path / "huge.jsonl", [GOOD, case_record("where is my order? " * 80_000, None)])
    result = CliRunner().invoke(main, ["cases", "import", str(huge), "--db", db])
    assert result.exit_code == 1
    assert f"{huge}:2: query: too long: 1,520,000 characters, the limit is 8,000" in result.output
    assert Store(db).count_cases() == 0
