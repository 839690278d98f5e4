"""Bad input is refused with its file and line (or the flag that gave it) before anything is written, and SQLite
and PostgreSQL refuse exactly the same input: CSV rows that do not fit their header, unknown or repeated JSON
fields, JSON that would crash the parser, and the texts, numbers and model names one store would keep and the
other fail on halfway through an import or a run."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promptopt.api import optimize
from promptopt.case import Case, ToolCall
from promptopt.cli import main
from promptopt.models.settings import ModelSettingsError
from promptopt.runs.store import CaseRejected, Store
from promptopt.tasks import bundled_task
from tests.fakes import FakeRouter
from tests.support import case_record, write_jsonl

GOOD = json.dumps(case_record("any coupons today?", "get_promotions"))
ORDER = '{"query": "where is my order", "expected": {"tool": "get_order_status", "arguments": {"order_id": %s}}}'
CSV_HEADER = "query,expected_tool,expected_arguments\n"
CSV_ROW = 'where is my order,get_order_status,"{""order_id"": ""FM1""}"\n'
NUL = "contains a NUL character (\\u0000), which the store cannot hold"
LONG_NAME = "m" * 129
DEAD_ENDPOINT = "http://127.0.0.1:9/v1"
"""Nothing listens there: a run that got as far as calling its model would fail."""


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
        ('my order,get_order_status,"{""order_id"": 1e999}"\n',
         ":3: invalid JSON in a column: 1e999 is not a finite number, which the store cannot hold"),
    ],
    ids=["unterminated-quote", "short-row", "one-cell-short", "infinite-argument"],
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


@pytest.mark.parametrize(
    "line, needle",
    [
        ('{"query": "hi", "expected": {"tool": null}, "lable": "good"}',
         "lable: unknown field; did you mean 'label'?"),
        ('{"query": "hi", "expected": {"tool": null, "txt": "hello"}}',
         "expected.txt: unknown field; did you mean 'text'?"),
        ('{"query": "hi", "expected": {"tool": null}, "weight": 2}',
         "weight: unknown field; the fields are: query, context, expected, actual, label, tags, source"),
        ('{"query": "hi", "label": "good", "expected": {"tool": null}, "label": "bad"}',
         "invalid JSON: key 'label' appears twice in one object (column 1)"),
        ('{"query": "where is \\ud800 my order", "expected": {"tool": null}}',
         "invalid JSON: a string contains a lone surrogate (\\ud800 to \\udfff), which the store cannot hold"),
        ("[" * 100_000, "invalid JSON: nested more than 100 levels deep"),
        (ORDER % "NaN", "invalid JSON: NaN is not a finite number, which the store cannot hold"),
        (ORDER % "-Infinity", "invalid JSON: -Infinity is not a finite number"),
        (ORDER % "1e999", "invalid JSON: 1e999 is not a finite number"),
        ('{"query": "hi", "context": [{"role": "user", "content": "hello", "score": NaN}], '
         '"expected": {"tool": null}}', "invalid JSON: NaN is not a finite number"),
    ],
    ids=["typo", "typo-in-expected", "unknown", "duplicate-key", "lone-surrogate", "deep-nesting", "nan",
         "infinity", "overflow", "nan-in-context"],
)
def test_json_a_store_would_misread_is_refused_with_its_line(tmp_path, line, needle):
    path = tmp_path / "cases.jsonl"
    path.write_text(f"{GOOD}\n{line}\n", encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    output = refused(imported(path, db), db)
    assert f"{path}:2: {needle}" in output
    assert f"{path}:1" not in output


def test_a_typo_in_a_log_correction_is_refused_but_not_the_log_own_fields(tmp_path):
    """Gateway logs carry fields of their own (id, model, usage, refusal...): only the correction's are checked."""
    call = {"id": "call_1", "type": "function", "function": {"name": "get_order_status",
                                                            "arguments": '{"order_id": "FM1"}'}}
    record = {"id": "chatcmpl-1", "model": "gpt-4o", "created": 1767225600, "usage": {"prompt_tokens": 9},
              "messages": [{"role": "user", "content": "where is my order FM1?", "name": "web"}],
              "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
                  "role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}}],
              "expected": {"tool": "get_order_status", "argumnets": {"order_id": "FM1"}}}
    sharegpt = {"id": "sg-1", "system": "You help shoppers.", "tools": "[]", "conversations": [
        {"from": "human", "value": "hi", "weight": 0},
        {"from": "gpt", "value": "hello", "weight": 1, "expected": {"tool": None, "lable": "good"}}]}
    log, chat = write_jsonl(tmp_path / "log.jsonl", [record]), write_jsonl(tmp_path / "sharegpt.jsonl", [sharegpt])
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert refused(imported(log, db), db).splitlines()[1:] == [
        f"{log}:1: expected.argumnets: unknown field; did you mean 'arguments'?"]
    assert refused(imported(chat, db), db).splitlines()[1:] == [
        f"{chat}:1: conversations[1].expected.lable: unknown field; the fields are: tool, arguments, text"]
    record["expected"]["arguments"] = record["expected"].pop("argumnets")
    sharegpt["conversations"][1]["expected"] = {"tool": None}
    write_jsonl(log, [record]), write_jsonl(chat, [sharegpt])
    assert imported(log, db).exit_code == 0 and imported(chat, db).exit_code == 0
    assert Store(db).count_cases() == 2


def test_unstorable_cases_are_refused_alike_by_every_store(store_url, tmp_path):
    """SQLite kept `Infinity` and NUL characters in JSON columns where PostgreSQL failed halfway; both refuse."""
    path = tmp_path / "cases.jsonl"
    nul_context = case_record("hi", None, context=[{"role": "user", "content": "hel\x00lo"}])
    nul_argument = case_record("my order", "get_order_status", expected={"tool": "get_order_status",
                                                                        "arguments": {"order_id": "FM\x001"}})
    path.write_text("\n".join([GOOD, ORDER % "Infinity", json.dumps(nul_context), json.dumps(nul_argument)]) + "\n",
                    encoding="utf-8")
    column = (ORDER % "Infinity").index('{"order_id"') + 1
    assert refused(imported(path, store_url), store_url).splitlines()[1:] == [
        f"{path}:2: invalid JSON: Infinity is not a finite number, which the store cannot hold (column {column})",
        f"{path}:3: context[0].content: {NUL}",
        f"{path}:4: expected.arguments.order_id: {NUL}"]
    store = Store(store_url)
    with pytest.raises(CaseRejected) as rejected:
        store.import_cases([Case("fine", ToolCall()), Case("my order", ToolCall("get_order_status",
                                                                                {"order_id": float("nan")})),
                            Case("hi", ToolCall(), context=({"role": "user", "content": "\ud800"},))])
    assert str(rejected.value).splitlines() == [
        "case 2: expected.arguments.order_id: nan is not a finite number, which the store cannot hold",
        "case 3: context[0].content: contains a lone surrogate (\\ud800 to \\udfff), which the store cannot hold"]
    assert store.count_cases() == 0


def test_nul_in_the_prompt_or_tools_file_is_refused_alike_by_every_store(store_url, tmp_path):
    cases = write_jsonl(tmp_path / "cases.jsonl", [case_record("any coupons today?", "get_promotions")])
    tools = bundled_task("tool-routing").tools
    tools[1]["function"]["description"] += "\x00"
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps(tools, indent=2), encoding="utf-8")
    line = json.dumps(tools, indent=2).splitlines().index("  {", 2) + 1
    output = refused(imported(cases, store_url, "--tools", str(tools_file)), store_url)
    assert output == f"Error: {tools_file}:{line}: tool #2: function.description: {NUL}\n"
    prompt = tmp_path / "prompt.md"
    prompt.write_text("You help shoppers of a grocery app.\nAnswer in the user's language.\x00\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--prompt", str(prompt), "--cases", str(cases), "--model", "scripted",
                                       "--base-url", DEAD_ENDPOINT, "--db", store_url])
    assert refused(result, store_url) == f"Error: {prompt}:2: the prompt {NUL}\n"


@pytest.mark.parametrize("flag", ["--model", "--optimizer-model"])
def test_a_model_name_longer_than_the_store_records_is_refused_alike_by_every_store(store_url, tmp_path, flag):
    """SQLite kept a 129-character model name; PostgreSQL failed at the run's first model call."""
    cases = write_jsonl(tmp_path / "cases.jsonl", [case_record("any coupons today?", "get_promotions")])
    models = ["--model", LONG_NAME] if flag == "--model" else ["--model", "scripted", "--optimizer-model", LONG_NAME]
    result = CliRunner().invoke(main, ["run", "--cases", str(cases), *models, "--base-url", DEAD_ENDPOINT,
                                       "--optimizer-base-url", DEAD_ENDPOINT, "--db", store_url])
    assert refused(result, store_url) == \
        f"Error: {flag}: the model name is 129 characters long; the store records names of at most 128\n"


class LongNamed(FakeRouter):
    """A scripted task model whose name is longer than the store records."""

    name = LONG_NAME

    def choose(self, system_prompt, conversation):
        return "none"


def test_a_backend_named_longer_than_the_store_records_is_refused_before_any_write(store_url, tmp_path):
    cases = write_jsonl(tmp_path / "cases.jsonl", [case_record("any coupons today?", "get_promotions")])
    with pytest.raises(ModelSettingsError, match="model= \\(the backend's name\\): the model name is 129 characters"):
        optimize(model=LongNamed(), cases=[cases], db=store_url)
    assert Store(store_url).count_cases() == 0 and Store(store_url).runs() == []
