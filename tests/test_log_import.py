"""Production logs (OpenAI chat-completions, ShareGPT): turns become cases, unlabelled turns are listed and
labelled from a CSV or interactively, and a malformed log or labels file imports nothing (file:line errors)."""
from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from promptopt.api import import_case_files
from promptopt.cli import main
from promptopt.runs.case_import import CaseFileError
from promptopt.runs.log_import import read_labels, read_source, resolve_format
from promptopt.runs.store import Store
from tests.support import write_jsonl


def tool_call(name: str, arguments: dict, call_id: str = "call_1") -> dict:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def openai_records(tools: list[dict]) -> list[dict]:
    """A gateway log: a Chinese multi-turn conversation with tool calls and two corrections, a text answer
    (`response` as a bare message) and an English tool call (`choices`), both without a correction."""
    fruit = tool_call("recommend_products", {"category": "水果"})
    return [
        {"messages": [
            {"role": "system", "content": "你是鲜达超市的购物助手。"},
            {"role": "user", "content": "有什么水果推荐"},
            {"role": "assistant", "content": None, "tool_calls": [fruit],
             "expected": {"tool": "recommend_products", "arguments": {"category": "水果"}}},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"items": ["阳光玫瑰葡萄", "丹东草莓"]}'},
            {"role": "assistant", "content": "阳光玫瑰葡萄和丹东草莓都不错"},
            {"role": "user", "content": [{"type": "text", "text": "那第二个呢？"}]}],
         "tools": tools,
         "response": {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0, "message": {
             "role": "assistant", "content": None,
             "tool_calls": [tool_call("recommend_products", {"category": "水果", "need": "第二个"})]}}]},
         "expected": {"tool": "get_product_info", "arguments": {"product_name": "丹东草莓"}}},
        {"messages": [{"role": "user", "content": "谢谢，没别的了"}], "tools": tools,
         "response": {"role": "assistant", "content": "不客气，祝您购物愉快！"}},
        {"messages": [{"role": "system", "content": "You are a grocery assistant."},
                      {"role": "user", "content": "where is my order FM123?"}],
         "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
             "role": "assistant", "content": None,
             "tool_calls": [tool_call("get_order_status", {"order_id": "FM123"})]}}]},
    ]


def sharegpt_records() -> list[dict]:
    """A ShareGPT conversation: a function call with its observation, then a text reply, each corrected."""
    return [{"system": "你是鲜达超市的购物助手。", "conversations": [
        {"from": "human", "value": "我想退货，订单 FM88 的牛奶坏了"},
        {"from": "function_call", "value": json.dumps({"name": "get_order_status", "arguments": {"order_id": "FM88"}}),
         "expected": {"tool": "request_after_sales", "arguments": {"order_id": "FM88", "issue": "质量问题"}}},
        {"from": "observation", "value": '{"status": "已签收"}'},
        {"from": "gpt", "value": "您的订单已签收，请问需要退货吗？"},
        {"from": "human", "value": "附近有门店吗？我在上海静安"},
        {"from": "gpt", "value": "请问您在哪个城市？",
         "expected": {"tool": "find_stores", "arguments": {"city": "上海", "area": "静安"}}}]}]


def write_labels(path, rows: list[list]) -> str:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["record", "turn", "expected_tool", "expected_arguments"], *rows])
    return str(path)


@pytest.fixture
def openai_log(tmp_path, task):
    return write_jsonl(tmp_path / "gateway.jsonl", openai_records(task.tools))


@pytest.fixture
def sharegpt_log(tmp_path):
    return write_jsonl(tmp_path / "sharegpt.jsonl", sharegpt_records())


def import_command(*args: str, db: str, input: str | None = None):
    return CliRunner().invoke(main, [*args, "--db", db], input=input)


def test_formats_are_detected_from_the_first_record(openai_log, sharegpt_log, small_case_file):
    assert resolve_format(openai_log) == "openai"
    assert resolve_format(sharegpt_log) == "sharegpt"
    assert resolve_format(small_case_file) == "cases"


def test_openai_turns_become_cases_with_context_and_production_call(openai_log, task):
    parsed = read_source(openai_log, task.tools)
    first, second = parsed.cases
    assert (first.query, first.context, first.label) == ("有什么水果推荐", (), "good")
    assert second.query == "那第二个呢？" and second.label == "bad"
    assert second.expected.arguments == {"product_name": "丹东草莓"}
    assert second.actual.name == "recommend_products"
    assert second.actual.arguments == {"category": "水果", "need": "第二个"}
    assert [m["role"] for m in second.context] == ["user", "assistant", "tool", "assistant"]
    assert second.context[1]["tool_calls"] == [tool_call("recommend_products", {"category": "水果"})]
    assert second.context[2]["tool_call_id"] == "call_1"
    assert parsed.lines == [1, 1] and second.tags == ("openai",)
    assert [(t.record, t.number, t.actual["tool"]) for t in parsed.unlabelled] == [(2, 1, None),
                                                                                  (3, 1, "get_order_status")]


def test_sharegpt_function_calls_and_observations(sharegpt_log, task, store):
    cases = import_case_files(store, [sharegpt_log], task.tools)
    refund, stores = cases
    assert refund.actual.name == "get_order_status" and refund.expected.name == "request_after_sales"
    assert stores.query == "附近有门店吗？我在上海静安" and stores.actual.is_none
    assert [m["role"] for m in stores.context] == ["user", "assistant", "tool", "assistant"]
    assert all(m["role"] != "system" for m in stores.context)
    assert store.count_cases() == 2


def test_sharegpt_as_a_json_array_reads_as_its_json_lines(sharegpt_log, tmp_path, task):
    """ShareGPT exports are usually one JSON array, not JSON Lines: both read as the same cases."""
    array = tmp_path / "sharegpt.json"
    array.write_text(json.dumps(sharegpt_records() * 2, ensure_ascii=False, indent=2), encoding="utf-8")
    from_lines = read_source(sharegpt_log, task.tools)
    from_array = read_source(array, task.tools)
    assert [c.content_hash() for c in from_array.cases] == [c.content_hash() for c in from_lines.cases] * 2
    assert from_array.lines[0] == 2 and from_array.lines[2] > from_array.lines[0]  # where each record starts
    broken = tmp_path / "broken.json"
    broken.write_text('[\n {"conversations": []},\n {"conversations": [}\n]', encoding="utf-8")
    with pytest.raises(CaseFileError, match=r"broken.json:3: invalid JSON"):
        read_source(broken, task.tools, "sharegpt")


def test_labels_csv_and_template_round_trip(openai_log, tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    template = tmp_path / "todo.csv"
    result = import_command("cases", "import", str(openai_log), "--write-labels", str(template), db=db)
    assert result.exit_code == 0, result.output
    assert "2 turns need a label" in result.output
    rows = list(csv.DictReader(template.open(encoding="utf-8")))
    assert [(r["record"], r["turn"], r["query"], r["actual_tool"]) for r in rows] == [
        ("2", "1", "谢谢，没别的了", "none"), ("3", "1", "where is my order FM123?", "get_order_status")]
    labels = write_labels(tmp_path / "labels.csv", [[2, "", "none", ""],
                                                    [3, 1, "get_order_status", '{"order_id": "FM123"}']])
    result = import_command("cases", "label", str(openai_log), "--labels", labels, "--no-input", db=db)
    assert result.exit_code == 0, result.output
    assert Store(db).count_cases() == 4 and "need a label" not in result.output
    assert {c.query: c.label for c in Store(db).cases()}["where is my order FM123?"] == "good"


def test_interactive_labelling_reasks_on_unknown_tool_and_skips_on_empty(openai_log, tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    answers = "\ncall_taxi\nget_order_status\n{\"order_id\": \"FM9\"}\n"
    result = import_command("cases", "label", str(openai_log), input=answers, db=db)
    assert result.exit_code == 0, result.output
    assert "production called: get_order_status" in result.output and "unknown tool 'call_taxi'" in result.output
    assert "1 turn needs a label" in result.output
    stored = {c.query: c for c in Store(db).cases()}
    assert len(stored) == 3 and "谢谢，没别的了" not in stored
    assert stored["where is my order FM123?"].expected.arguments == {"order_id": "FM9"}
    assert stored["where is my order FM123?"].label == "bad"


def refused(path, db: str, *args: str) -> str:
    result = import_command("cases", "import", str(path), *args, db=db)
    assert result.exit_code == 1 and "nothing was imported" in result.output, result.output
    assert Store(db).count_cases() == 0
    return result.output


def test_bad_json_line_imports_nothing(openai_log, tmp_path):
    lines = openai_log.read_text(encoding="utf-8").splitlines()
    openai_log.write_text("\n".join([lines[0], '{"messages": [', *lines[1:]]) + "\n", encoding="utf-8")
    assert f"{openai_log}:2: invalid JSON" in refused(openai_log, f"sqlite:///{tmp_path / 'store.db'}")


def test_unknown_tool_in_a_correction_names_line_and_field(tmp_path, task):
    records = openai_records(task.tools)
    records[2]["expected"] = {"tool": "call_taxi", "arguments": {}}
    records[0]["messages"][2]["expected"]["arguments"] = {"colour": "红"}
    path = write_jsonl(tmp_path / "log.jsonl", records)
    output = refused(path, f"sqlite:///{tmp_path / 'store.db'}")
    assert f"{path}:3: expected.tool: unknown tool 'call_taxi'" in output
    assert f"{path}:1: messages[2].expected.arguments: recommend_products has no parameter 'colour'" in output


def test_malformed_sharegpt_turns(tmp_path):
    record = sharegpt_records()[0]
    record["conversations"][1]["value"] = '{"name": "get_order_status", "arguments": '
    path = write_jsonl(tmp_path / "sg.jsonl", [record, {"conversations": [{"from": "bot", "value": "hi"}]}])
    output = refused(path, f"sqlite:///{tmp_path / 'store.db'}", "--format", "sharegpt")
    assert f"{path}:1: conversations[1].value: invalid JSON in a function call" in output
    assert f"{path}:2: conversations[0].from: must be one of" in output


def test_labels_row_for_a_missing_turn_names_the_csv_line(openai_log, tmp_path):
    labels = write_labels(tmp_path / "labels.csv", [[2, 1, "none", ""], [3, 4, "find_stores", "{}"],
                                                    [7, "", "none", ""], [3, 1, "call_taxi", "{}"]])
    output = refused(openai_log, f"sqlite:///{tmp_path / 'store.db'}", "--labels", labels)
    assert f"{labels}:3: turn: the record on line 3 of {openai_log} has 1 turn(s), not 4" in output
    assert f"{labels}:4: record: {openai_log} has no record with an assistant turn on line 7" in output
    assert f"{labels}:5: expected_tool: unknown tool 'call_taxi'" in output


def test_labels_csv_problems(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("record,turn,expected_tool,expected_arguments\nx,1,none,\n2,1,none,{oops\n2,,none,\n2,,none,\n",
                    encoding="utf-8")
    with pytest.raises(CaseFileError) as error:
        read_labels(path)
    text = str(error.value)
    assert f"{path}:2: record: must be the line number" in text
    assert f"{path}:3: expected_arguments: invalid JSON" in text
    assert f"{path}:5: a second label for record 2, turn last" in text


def test_a_record_without_messages_and_a_double_correction(tmp_path, task):
    records = openai_records(task.tools)
    records[0]["response"]["choices"][0]["message"]["expected"] = {"tool": None}
    path = write_jsonl(tmp_path / "log.jsonl", [*records, {"model": "gpt-4o", "response": "hi"}])
    with pytest.raises(CaseFileError) as error:
        read_source(path, task.tools, "openai")
    text = str(error.value)
    assert f"{path}:1: expected: the last turn already has a correction" in text
    assert f"{path}:4: messages: missing" in text
