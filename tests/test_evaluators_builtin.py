"""Built-in evaluators on real edge cases, composition, the registry, and per-evaluator scores in the store."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptopt.api import optimize
from promptopt.case import Case, ToolCall
from promptopt.cli import main
from promptopt.evaluators import (AllMustPass, EvaluatorError, EvaluatorSettings, JsonSchemaEvaluator,
                                  TextEvaluator, ToolCallEvaluator, UnknownEvaluator, WeightedEvaluator,
                                  build_evaluator)
from promptopt.evaluators.tool_call import iso_date
from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from tests.fakes import ReplyRouter
from tests.support import write_jsonl

BFCL = Path(__file__).resolve().parents[2] / "shared" / "data" / "bfcl_v4" / "data"


def tool(name: str, properties: dict, required: list | None = None) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": properties, "required": required or []}}}


TOOLS = [
    tool("calculate_area_under_curve", {"function": {"type": "string"}, "interval": {"type": "array", "items": {"type": "number"}},
                                        "method": {"type": "string", "default": "trapezoidal"}}, ["function", "interval"]),
    tool("route_estimate_time", {"start_location": {"type": "string"}, "stops": {"type": "array", "items": {"type": "string"}}}),
    tool("recommend_recipes", {"ingredients": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}),
    tool("manage_cart", {"action": {"type": "string", "enum": ["add", "remove"]}, "product_name": {"type": "string"},
                         "quantity": {"type": "integer"}}, ["action"]),
    tool("check_delivery_slots", {"address": {"type": "string"}, "date": {"type": "string"}}),
]
ARGS = ToolCallEvaluator(check_arguments=True, tools=TOOLS)


def case(name: str, text: str = "", **arguments) -> Case:
    return Case(query="q", expected=ToolCall(name, arguments, text))


def test_bfcl_acceptable_value_lists_with_omission_and_ordered_alternatives():
    # after BFCL simple_python_13 and _37: "" allows leaving the argument out; array alternatives are lists
    expected = case("calculate_area_under_curve", function=["x**2", "lambda x: x**2"], interval=[[1.0, 3.0]],
                    method=["", "trapezoidal"])
    assert ARGS(expected, ToolCall("calculate_area_under_curve", {"function": "lambda x: x**2", "interval": [1, "3"]})).passed
    wrong = ARGS(expected, ToolCall("calculate_area_under_curve",
                                    {"function": "x**3", "interval": [1, 3], "method": "simpson"}))
    assert wrong.value == 0.5 + 0.5 * 1 / 3
    assert "function='x**3' (expected one of ['x**2', 'lambda x: x**2'])" in wrong.feedback
    stops = case("route_estimate_time", stops=[["Santa Barbara", "Monterey"], ["Monterey", "Santa Barbara"]])
    assert ARGS(stops, ToolCall("route_estimate_time", {"stops": ["monterey", "santa barbara"]})).passed
    ordered = case("route_estimate_time", stops=["Santa Barbara", "Monterey"])
    assert not ARGS(ordered, ToolCall("route_estimate_time", {"stops": ["Monterey", "Santa Barbara"]})).passed


def test_list_order_is_free_only_where_the_schema_says_so():
    unordered = case("recommend_recipes", ingredients=["番茄", "鸡蛋"])
    assert ARGS(unordered, ToolCall("recommend_recipes", {"ingredients": ["鸡蛋", "番茄"]})).passed
    # without tools nothing is known about the parameter: lists stay order-free, as before
    assert ToolCallEvaluator()(case("route_estimate_time", stops=["a", "b"]),
                               ToolCall("route_estimate_time", {"stops": ["b", "a"]})).passed


def test_numbers_given_as_strings_chinese_text_and_missing_optional_arguments():
    expected = case("manage_cart", action="add", product_name="丹东草莓", quantity=2)
    assert ARGS(expected, ToolCall("manage_cart", {"action": "ADD", "product_name": " 丹东草莓 ", "quantity": "2"})).passed
    assert ARGS(expected, ToolCall("manage_cart", {"action": "add", "product_name": "丹东草莓", "quantity": 2.0})).passed
    assert not ARGS(expected, ToolCall("manage_cart", {"action": "add", "product_name": "阳光玫瑰葡萄", "quantity": 2})).passed
    # optional arguments the case does not expect may be absent (or present) in the output
    assert ARGS(case("manage_cart", action="add"), ToolCall("manage_cart", {"action": "add"})).passed
    # an expected value equal to the schema default matches an omitted argument; other values do not
    assert ARGS(case("calculate_area_under_curve", function="x", interval=[[1, 2]], method="trapezoidal"),
                ToolCall("calculate_area_under_curve", {"function": "x", "interval": [1, 2]})).passed
    missing = ARGS(case("manage_cart", action="add", quantity=3), ToolCall("manage_cart", {"action": "add"}))
    assert missing.value == 0.75 and "quantity missing (expected 3)" in missing.feedback


def test_dates_compare_as_iso_dates():
    expected = case("check_delivery_slots", date="2026-11-23")
    for said in ("2026/11/23", "23 Nov 2026", "November 23, 2026", "２０２６年１１月２３日", "2026-11-23"):
        assert ARGS(expected, ToolCall("check_delivery_slots", {"date": said})).passed, said
    assert not ARGS(expected, ToolCall("check_delivery_slots", {"date": "2026-11-24"})).passed
    assert iso_date("11/23/2026") is None and iso_date("31 feb 2026") is None and iso_date("tomorrow") is None


@pytest.mark.skipif(not (BFCL / "possible_answer").exists(), reason="BFCL data not present")
def test_real_bfcl_rows_pass_with_any_listed_answer_and_fail_without_a_required_value():
    questions = {json.loads(l)["id"]: json.loads(l) for l in (BFCL / "BFCL_v4_simple_python.json").open()}
    answers = [json.loads(l) for l in (BFCL / "possible_answer" / "BFCL_v4_simple_python.json").open()][:60]
    types = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}
    for row in answers:
        (name, expected), = row["ground_truth"][0].items()
        function = questions[row["id"]]["function"][0]
        properties = {k: {**v, "type": types.get(v.get("type"), v.get("type"))}
                      for k, v in function["parameters"].get("properties", {}).items()}
        evaluator = ToolCallEvaluator(tools=[tool(name, properties)])
        last = {k: v[-1] for k, v in expected.items() if v[-1] != ""}
        assert evaluator(Case("q", ToolCall(name, expected)), ToolCall(name, last)).passed, row["id"]
        needed = [k for k, v in expected.items() if "" not in v]
        if needed:
            partial = {k: v for k, v in last.items() if k != needed[0]}
            assert not evaluator(Case("q", ToolCall(name, expected)), ToolCall(name, partial)).passed, row["id"]


def test_text_evaluators_on_the_reply():
    expected = case("none", text="您的订单明天送达")
    assert TextEvaluator("exact")(expected, ToolCall(text=" 您的订单明天送达 ")).passed
    assert not TextEvaluator("exact")(expected, ToolCall(text="您的订单今天送达")).passed
    assert TextEvaluator("contains")(case("none", text="Order SHIPPED"), ToolCall(text="Your order shipped today.")).passed
    regex = TextEvaluator("regex", pattern=r"FM\d{6}")
    assert regex(case("none"), ToolCall(text="订单号 FM123456")).passed
    failed = regex(case("none"), ToolCall(text="no number"))
    assert not failed.passed and "does not match" in failed.feedback
    assert TextEvaluator("exact")(case("none"), ToolCall(text="anything")).feedback == "exact: no expected text to check"


def test_json_schema_validity():
    evaluator = JsonSchemaEvaluator(TOOLS)
    assert evaluator(case("manage_cart"), ToolCall("manage_cart", {"action": "add", "quantity": 2})).passed
    bad = evaluator(case("manage_cart"), ToolCall("manage_cart", {"action": "buy", "quantity": "2"}))
    assert bad.value == 0.0 and "json_schema: manage_cart" in bad.feedback
    assert "required" in evaluator(case("manage_cart"), ToolCall("manage_cart", {})).feedback
    assert not evaluator(case("manage_cart"), ToolCall("call_taxi", {})).passed
    assert evaluator(case("none"), ToolCall()).passed


def test_weighted_and_all_must_pass_report_every_part():
    right_tool_bad_args = ToolCall("manage_cart", {"action": "buy"})
    parts = [(ToolCallEvaluator(False, TOOLS, name="tool_name"), 3.0), (JsonSchemaEvaluator(TOOLS), 1.0)]
    weighted = WeightedEvaluator(parts)(case("manage_cart"), right_tool_bad_args)
    assert weighted.value == 0.75 and not weighted.passed
    assert dict(weighted.parts) == {"tool_name": 1.0, "json_schema": 0.0}
    strict = AllMustPass([p for p, _ in parts])(case("manage_cart"), right_tool_bad_args)
    assert strict.value == 0.0 and strict.feedback.startswith("json_schema:")


def test_registry_accepts_names_weights_callables_and_rejects_unknown_names():
    def mentions_fm(case, output):
        return "FM" in output.text

    evaluator = build_evaluator(["tool_name:2", mentions_fm, (lambda c, o: 0.5, 1.0)], EvaluatorSettings(tools=TOOLS))
    score = evaluator(case("none"), ToolCall(text="FM1"))
    assert evaluator.component_names == ["tool_name", "mentions_fm", "<lambda>"]
    assert score.value == pytest.approx((2 + 1 + 0.5) / 4)
    assert build_evaluator(None).name == "tool_call"
    with pytest.raises(UnknownEvaluator, match="unknown evaluator 'tool_cal'; available: tool_call, tool_name"):
        build_evaluator(["tool_cal"])
    with pytest.raises(EvaluatorError, match="weights have no meaning"):
        build_evaluator(["tool_name=2", "json_schema"], EvaluatorSettings(tools=TOOLS), all_must_pass=True)
    with pytest.raises(ValueError, match="outside"):
        build_evaluator([lambda c, o: 2])(case("none"), ToolCall())


def test_runs_store_each_evaluators_score_and_show_a_breakdown(tmp_path, small_case_file, task):
    cases = read_cases(small_case_file, task.tools)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    result = optimize(cases=[small_case_file], model=ReplyRouter(cases), db=db, steps=1,
                      evaluators=["tool_name=2", "json_schema", "exact"], pattern="好的")
    breakdown = result.report["evaluators"]
    assert list(breakdown) == ["tool_name", "json_schema", "exact"]
    assert breakdown["tool_name"]["seed"]["pass_rate"] == 1.0 and breakdown["exact"]["winner"]["mean_score"] == 1.0
    stored = Store(db).evaluations(result.report["seed"]["candidate_id"]).values()
    assert {e.evaluator for e in stored} == {"tool_name+json_schema+exact"}
    carts = [e for e in stored if e.predicted_tool == "manage_cart"]
    assert carts and all(e.scores == {"tool_name": 1.0, "json_schema": 0.0, "exact": 1.0} for e in carts)
    assert all(e.score == 0.75 and "quantity" in e.feedback and e.predicted_text == "好的" for e in carts)
    shown = CliRunner().invoke(main, ["runs", "show", result.run_id, "--db", db])
    assert "per evaluator (test)" in shown.output and "json_schema" in shown.output
    as_json = json.loads(CliRunner().invoke(main, ["runs", "show", result.run_id, "--db", db, "--json"]).output)
    assert as_json["evaluators"]["json_schema"]["seed"]["pass_rate"] < 1.0
    single = optimize(cases=[small_case_file], model=ReplyRouter(cases), db=db, steps=1)
    assert "evaluators" not in single.report


def test_cli_refuses_unknown_evaluators_and_lists_built_ins(tmp_path):
    refused = CliRunner().invoke(main, ["run", "--evaluator", "nope", "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert refused.exit_code == 2 and "unknown evaluator 'nope'; available: tool_call" in refused.output
    listing = CliRunner().invoke(main, ["evaluators", "list"]).output
    assert all(f"{name} " in listing for name in ("tool_call", "arguments", "exact", "regex", "json_schema", "judge"))


def test_expected_text_is_imported_stored_and_old_stores_gain_the_new_columns(tmp_path, task):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE evaluations (id INTEGER PRIMARY KEY, candidate_id INTEGER, case_id INTEGER, "
                           "predicted_tool VARCHAR(128), predicted_arguments JSON, score FLOAT, passed BOOLEAN, "
                           "feedback TEXT, evaluator VARCHAR(64), error TEXT)")
    store = Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(evaluations)")}
    assert {"scores", "predicted_text"} <= columns
    cases = write_jsonl(tmp_path / "c.jsonl", [{"query": "你好", "expected": {"tool": None, "text": "您好！"}}])
    parsed = read_cases(cases, task.tools)
    stored = store.cases(store.import_cases(parsed).case_ids)
    assert stored[0].expected.text == "您好！"
    broken = write_jsonl(tmp_path / "b.jsonl", [{"query": "hi", "expected": {"tool": None, "text": 3}}])
    with pytest.raises(ValueError, match="expected.text: must be a string"):
        read_cases(broken, task.tools)
