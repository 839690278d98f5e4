"""Tools and seed prompt files: a malformed one is refused with file and line, before any case or model is touched."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.store import Store
from promptopt.tasks import TaskFileError, load_tools
from tests.conftest import case_record, write_jsonl

TOOL = {"type": "function", "function": {
    "name": "get_order_status", "description": "Where an order is.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}}
SECOND_TOOL_LINE = json.dumps(TOOL, indent=2).count("\n") + 3


def function(**fields) -> dict:
    return {"type": "function", "function": {"name": "find_stores", **fields}}


def write_tools(path, tools):
    path.write_text(json.dumps(tools, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "tool, needle",
    [
        (function(parameters="oops"), "find_stores: parameters must be a JSON object (a JSON schema), got \"oops\""),
        (function(parameters={"type": "object", "properties": ["city"]}),
         "find_stores: parameters.properties must be a JSON object"),
        (function(description=["near me"]), "find_stores: description must be a string"),
        (function(name="none"), "function name 'none' is reserved"),
        (function(name="None"), "function name 'None' is reserved"),
        (function(name="find stores"), "function name 'find stores' must be 1 to 64 letters, digits, _ or -"),
        (function(name="stores.find"), "function name 'stores.find' must be 1 to 64"),
        (function(name="查门店"), "function name '查门店' must be 1 to 64"),
        (function(name="x" * 65), "must be 1 to 64"),
        (function(name=""), "has no function name"),
        ({"type": "retrieval", "function": {"name": "find_stores"}}, 'type must be "function", got \'retrieval\''),
        ({"type": "function", "function": "find_stores"}, "function must be a JSON object"),
        ("find_stores", "must be a JSON object"),
        (TOOL, "duplicate tool name 'get_order_status' (also tool #1)"),
    ],
    ids=["parameters", "properties", "description", "none", "None", "space", "dot", "non-ascii", "65-chars",
         "empty-name", "type", "function", "not-object", "duplicate"],
)
def test_malformed_tool_names_file_line_and_index(tmp_path, tool, needle):
    path = write_tools(tmp_path / "tools.json", [TOOL, tool])
    with pytest.raises(TaskFileError) as raised:
        load_tools(path)
    assert str(raised.value).startswith(f"{path}:{SECOND_TOOL_LINE}: tool #2: ")
    assert needle in str(raised.value)


def test_tool_lines_are_found_under_a_tools_key(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text('{"version": [1, "]"],\n "tools": [\n  {"name": "find_stores"},\n\n  {"name": "bad name"}\n ]}\n',
                    encoding="utf-8")
    with pytest.raises(TaskFileError, match=r"tools.json:5: tool #2: function name 'bad name'"):
        load_tools(path)


def test_well_formed_tools_load_in_both_shapes(tmp_path, task):
    bare = write_tools(tmp_path / "bare.json", [{"name": "find-stores_2", "description": "Stores."}, TOOL])
    assert [t["function"]["name"] for t in load_tools(bare)] == ["find-stores_2", "get_order_status"]
    assert all(t["type"] == "function" for t in load_tools(bare))
    assert len(task.tools) == 10


@pytest.mark.parametrize("command", [["run", "--estimate"], ["cases", "import"]])
def test_cli_refuses_a_malformed_tools_file(tmp_path, command):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    tools = write_tools(tmp_path / "tools.json", [TOOL, function(parameters="oops")])
    cases = write_jsonl(tmp_path / "cases.jsonl", [case_record("where is my order", "get_order_status")])
    cases_flag = ["--cases"] if command[0] == "run" else []
    result = CliRunner().invoke(main, [*command, *cases_flag, str(cases), "--tools", str(tools), "--db", db])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"{tools}:{SECOND_TOOL_LINE}: tool #2: find_stores: parameters must be a JSON object" in result.output
    assert Store(db).count_cases() == 0
