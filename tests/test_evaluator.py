"""The tool-call evaluator: the tool first, then each expected argument after normalisation."""
from __future__ import annotations

from promptopt.case import Case, ToolCall
from promptopt.evaluators.tool_call import ToolCallEvaluator, values_match


def case(tool: str, **arguments) -> Case:
    return Case(query="q", expected=ToolCall(tool, arguments))


def test_wrong_tool_scores_zero_with_feedback():
    score = ToolCallEvaluator()(case("get_order_status"), ToolCall("check_delivery_slots"))
    assert score.value == 0.0 and not score.passed
    assert score.feedback == "expected get_order_status, got check_delivery_slots"


def test_no_tool_is_a_choice_like_any_other():
    assert ToolCallEvaluator()(case("none"), ToolCall()).passed
    assert not ToolCallEvaluator()(case("none"), ToolCall("find_stores")).passed


def test_arguments_partial_credit_and_feedback():
    expected = case("manage_cart", action="add", product_name="丹东草莓", quantity=2)
    score = ToolCallEvaluator()(expected, ToolCall("manage_cart", {"action": "ADD ", "product_name": "丹东草莓"}))
    assert score.value == 0.5 + 0.5 * 2 / 3 and not score.passed
    assert "quantity missing" in score.feedback


def test_arguments_ignored_when_checking_is_off():
    expected = case("get_order_status", order_id="FM1")
    assert ToolCallEvaluator(check_arguments=False)(expected, ToolCall("get_order_status")).passed
    assert not ToolCallEvaluator()(expected, ToolCall("get_order_status")).passed


def test_normalisation():
    assert values_match(50, "50")
    assert values_match("50.0", 50)
    assert values_match("  Pudong   New Area", "pudong new area")
    assert values_match("ＦＭ１２３", "FM123")
    assert values_match(["egg", "tomato"], ["Tomato", "egg"])
    assert values_match(True, "true")
    assert not values_match("tomorrow", "today")
    assert not values_match(2, 3)
