"""On-disk cache of model responses keyed by the full request, so a re-run of a finished run calls no model.

A request is everything that decides the answer (endpoint, model, messages, tools, sampling parameters, seed and,
for sampled calls, the sample index); its SHA-256 over canonical JSON names one file under the cache folder.
Files are written to a temporary name and renamed, so a killed process never leaves a half-written entry.
API keys are never part of a request.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def request_key(request: dict[str, Any]) -> str:
    """Stable hex digest of a request: key order and whitespace do not matter, every value does."""
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Maps requests to stored responses (JSON objects) in `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The stored response for `request`, or None; an unreadable entry counts as a miss."""
        path = self._path(request_key(request))
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return entry.get("response") if isinstance(entry, dict) else None

    def put(self, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Store `response` for `request`, atomically; an OS error (a full disk) names the entry it could not write."""
        path = self._path(request_key(request))
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump({"request": request, "response": response}, stream, ensure_ascii=False)
            os.replace(temporary, path)
        except BaseException as error:
            Path(temporary).unlink(missing_ok=True)
            if isinstance(error, OSError) and not error.filename:
                raise OSError(error.errno, error.strerror, str(path)) from error
            raise
