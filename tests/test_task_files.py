"""Tools and seed prompt files: a malformed one is refused with file and line, before any case or model is touched."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.store import Store
from promptopt.tasks import TaskFileError, load_prompt, load_tools
from tests.support import case_record, write_jsonl

SEED = "Route to get_order_status or find_stores.\n<!-- protected -->\nNever share card numbers.\n<!-- /protected -->\n"
UNPAIRED = [
    (SEED + "<!-- protected -->\nNo refunds.\n", 5, "opening <!-- protected --> marker without a closing"),
    (SEED + "Done.\n<!--/protected-->\n", 6, "closing <!-- /protected --> marker without an opening one"),
    (SEED.replace("Never", "<!-- protected -->\nNever"), 3, "marker inside the protected region opened on line 2"),
]
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


@pytest.mark.parametrize("text, line, needle", UNPAIRED, ids=["unclosed", "stray-closing", "nested"])
def test_unpaired_markers_in_a_prompt_file_name_the_line(tmp_path, text, line, needle):
    path = tmp_path / "prompt.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TaskFileError) as raised:
        load_prompt(path)
    assert str(raised.value).startswith(f"{path}:{line}: ") and needle in str(raised.value)


def test_prompt_file_over_the_limit_is_refused(tmp_path):
    path = tmp_path / "prompt.md"
    path.write_text(SEED + "x" * (12_000 - len(SEED)), encoding="utf-8")
    assert len(load_prompt(path)) == 12_000
    path.write_text(SEED + "x" * (12_001 - len(SEED)), encoding="utf-8")
    with pytest.raises(TaskFileError, match="the prompt is too long: 12,001 characters, the limit is 12,000"):
        load_prompt(path)


@pytest.mark.parametrize("estimate", [[], ["--estimate"]], ids=["run", "estimate"])
@pytest.mark.parametrize("text, needle", [
    ("x" * 12_345, ": the prompt is too long: 12,345 characters, the limit is 12,000"),
    (UNPAIRED[0][0], ":5: opening <!-- protected --> marker without a closing <!-- /protected --> after it"),
], ids=["too-long", "unpaired"])
def test_run_refuses_a_bad_seed_prompt_before_any_work(tmp_path, monkeypatch, estimate, text, needle):
    import promptopt.api

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(promptopt.api, "load_model", no_model)
    db = f"sqlite:///{tmp_path / 'x.db'}"
    prompt = tmp_path / "prompt.md"
    prompt.write_text(text, encoding="utf-8")
    cases = write_jsonl(tmp_path / "cases.jsonl", [case_record("where is my order", "get_order_status")])
    result = CliRunner().invoke(main, ["run", "--cases", str(cases), "--prompt", str(prompt), "--db", db,
                                       "--quiet", *estimate])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [f"Error: {prompt}{needle}"]
    assert Store(db).count_cases() == 0 and Store(db).runs() == []
