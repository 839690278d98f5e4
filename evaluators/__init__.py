"""Scoring: the evaluator protocol, the built-in evaluators, composition and the plugin registry."""
from promptopt.evaluators.base import Evaluator, Score
from promptopt.evaluators.callables import as_evaluator
from promptopt.evaluators.composite import AllMustPass, WeightedEvaluator
from promptopt.evaluators.json_schema import JsonSchemaEvaluator
from promptopt.evaluators.registry import (ENTRY_POINT_GROUP, EvaluatorError, EvaluatorSettings, UnknownEvaluator, available,
                                           build_evaluator, create)
from promptopt.evaluators.text import TextEvaluator
from promptopt.evaluators.tool_call import ToolCallEvaluator

__all__ = ["AllMustPass", "ENTRY_POINT_GROUP", "Evaluator", "EvaluatorError", "EvaluatorSettings", "JsonSchemaEvaluator", "Score",
           "TextEvaluator", "ToolCallEvaluator", "UnknownEvaluator", "WeightedEvaluator", "as_evaluator", "available",
           "build_evaluator", "create"]
