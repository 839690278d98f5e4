"""JSON-schema validity: the output's arguments validate against the chosen tool's `parameters` schema."""
from __future__ import annotations

from typing import Any, Sequence

import jsonschema

from promptopt.case import Case, ToolCall
from promptopt.evaluators.base import Score
from promptopt.evaluators.tool_call import parameter_schemas


class JsonSchemaEvaluator:
    """Scores 1 when the called tool exists and its arguments are valid under its schema (or no tool is called),
    else 0 with the first validation error as feedback."""

    name = "json_schema"
    check_arguments = True

    def __init__(self, tools: Sequence[dict[str, Any]]) -> None:
        self.schemas = parameter_schemas(tools)

    def __call__(self, case: Case, output: ToolCall) -> Score:
        if output.is_none:
            return Score(1.0, "json_schema: no tool call to validate")
        if output.name not in self.schemas:
            return Score(0.0, f"json_schema: unknown tool {output.name!r}")
        schema = self.schemas[output.name]
        validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(dict(output.arguments)))
        if error is None:
            return Score(1.0, f"json_schema: {output.name} arguments are valid")
        where = "/".join(str(p) for p in error.absolute_path) or "arguments"
        return Score(0.0, f"json_schema: {output.name} {where}: {error.message}")
