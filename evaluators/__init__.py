"""Scoring: the evaluator protocol and the built-in evaluators."""
from promptopt.evaluators.base import Evaluator, Score
from promptopt.evaluators.tool_call import ToolCallEvaluator

__all__ = ["Evaluator", "Score", "ToolCallEvaluator"]
