"""promptopt: automatic system-prompt optimization from bad cases."""
from promptopt.api import RunResult, optimize
from promptopt.case import Case, ToolCall

__all__ = ["Case", "RunResult", "ToolCall", "optimize"]
__version__ = "0.1.0"
