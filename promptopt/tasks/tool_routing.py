"""The tool-routing task: under a system prompt, the model picks one tool (or none) for each conversation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from promptopt.case import Case
from promptopt.models.base import ModelBackend, Routed


@dataclass
class ToolRoutingTask:
    """Runs a model on cases with the task's tools; `check_arguments` also asks for the call's arguments."""

    tools: list[dict[str, Any]]
    check_arguments: bool = False
    name: str = field(default="tool-routing", init=False)

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    def run(self, model: ModelBackend, system_prompt: str, cases: Sequence[Case]) -> list[Routed]:
        return model.route(system_prompt, self.tools, [c.messages() for c in cases], self.check_arguments)
