"""promptopt: automatic system-prompt optimization from bad cases."""
from promptopt.api import RunResult, estimate, optimize, resume
from promptopt.case import Case, ToolCall
from promptopt.request import RunRequest

__all__ = ["Case", "RunRequest", "RunResult", "ToolCall", "estimate", "optimize", "resume"]
__version__ = "0.1.0"
