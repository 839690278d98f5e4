"""Whether an endpoint's refusal of a request carrying `n` (several choices in one reply) says that it takes no
`n`, so the samples of one prompt must be asked for one call each. Only that refusal switches a backend to
separate calls; any other refusal is the failure of the call it came with."""
from __future__ import annotations

import re

from promptopt.models.retry import status_code
from promptopt.models.tool_support import REFUSAL_STATUSES, error_detail

NAMES_N = re.compile(
    r"(?<![\w.\[\]-])['\"`]?n['\"`]?\s*(=|>|<|!=|must|should|is|are|:|only|not|parameter|value)"
    r"|\b(parameter|argument|field|value of|for)s?:?\s+['\"`]?n\b(?![\w-])"
    r"|:\s*['\"`]?n['\"`]?\s*([.,;]|$)"
    r"|['\"`]n['\"`]",
    re.IGNORECASE)
"""What endpoints without `n` answer: OpenAI-style `param: "n"`, "n must be 1", "Only n=1 is supported",
"'n' is not supported", "Unsupported value for parameter n", vLLM-style "arguments supplied: n"."""


def says_no_choices(status: int, message: str, param: str | None) -> bool:
    """Whether a refusal (`status`, the error's `message` and `param`) names `n`: the endpoint takes no `n` (or
    not this many)."""
    if status not in REFUSAL_STATUSES:
        return False
    if param is not None:
        return param == "n"
    return bool(NAMES_N.search(message))


def choices_refusal(error: BaseException) -> str:
    """The endpoint's own words when `error` (the SDK's, for a request carrying `n`) refuses `n`; '' for any other
    failure."""
    message, param = error_detail(error)
    return message if says_no_choices(status_code(error) or 0, message, param) else ""
