"""Model backends. `embedded` is the local SmolLM2-135M-Instruct and the default."""
from __future__ import annotations

from promptopt.models.base import CallRecord, ModelBackend, Routed

EMBEDDED = "embedded"


def load_model(name: str = EMBEDDED, base_url: str | None = None) -> ModelBackend:
    """The backend for a model name: `embedded`, or (with a base URL) an OpenAI-compatible endpoint."""
    if name == EMBEDDED and base_url is None:
        from promptopt.models.embedded import EmbeddedModel

        return EmbeddedModel()
    raise ValueError(
        f"model {name!r}: only the embedded model is available in this version; "
        "OpenAI-compatible endpoints (--base-url) are not supported yet"
    )


__all__ = ["CallRecord", "EMBEDDED", "ModelBackend", "Routed", "load_model"]
