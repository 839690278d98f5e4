"""When and how long to wait before retrying a failed API call: exponential backoff with full jitter, honouring
`Retry-After` on 429 and 503, for rate limits, server errors, timeouts, dropped connections and malformed
responses. Client errors (400, 401, 404 …) are final: retrying cannot fix them."""
from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; waits grow from `base_s` by `factor` up to `cap_s`, each drawn in [0, limit]."""

    attempts: int = 6
    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, error: BaseException, rng: random.Random) -> float:
        """Seconds to wait after failed try number `attempt` (1-based): the server's Retry-After when it
        gives one (capped), else full jitter over the exponential limit."""
        advised = retry_after_s(error)
        if advised is not None:
            return min(advised, self.max_retry_after_s)
        limit = min(self.cap_s, self.base_s * self.factor ** (attempt - 1))
        return rng.uniform(0, limit)


def status_code(error: BaseException) -> int | None:
    """The HTTP status of an SDK error, when it carries one."""
    code = getattr(error, "status_code", None)
    return code if isinstance(code, int) else None


def is_retryable(error: BaseException) -> bool:
    """True for errors a later try may not meet: 408/409/429/5xx, timeouts, connection errors, bad bodies."""
    import openai

    if isinstance(error, (openai.APITimeoutError, openai.APIConnectionError, openai.APIResponseValidationError)):
        return True
    if isinstance(error, ValueError):
        return True  # a body that is not the JSON it claims to be
    code = status_code(error)
    return code in RETRYABLE_STATUS if code is not None else False


def retry_after_s(error: BaseException) -> float | None:
    """Seconds from a `Retry-After` (or `retry-after-ms`) header on the error's response, if any."""
    response: Any = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
