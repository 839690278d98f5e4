"""Plain helpers the test modules and `conftest.py` share: the repository root, JSONL case files, and embedded
backends that reuse already loaded weights. They live here, not in `conftest.py`, so that no test module has to
import conftest (pytest loads it as a plugin, not as a module to import from)."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, records: list) -> Path:
    """Write `records` to `path` as JSON lines (UTF-8, non-ASCII kept as is); returns `path`."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def case_record(query: str, tool: str | None, label: str = "bad", **extra) -> dict:
    """One case-file record without context or arguments; `extra` adds or replaces fields."""
    record = {"query": query, "context": [], "expected": {"tool": tool, "arguments": {}}, "label": label}
    record.update(extra)
    return record


def share_weights(monkeypatch: pytest.MonkeyPatch, embedded):
    """Make embedded backends built from now on reuse `embedded`'s loaded weights (for fixtures of any scope)."""
    from promptopt.models import embedded as module

    original = module.EmbeddedModel
    monkeypatch.setattr(module, "EmbeddedModel",
                        lambda **kw: original(model=embedded._model, tokenizer=embedded._tokenizer, **kw))
    return embedded


def send_json(handler, status: int, payload: dict) -> None:
    """Answer a raw `BaseHTTPRequestHandler` request with `payload` as JSON (for endpoints that break the rules on
    purpose, which the strict `ChatServer` will not)."""
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def interruptible() -> None:
    """`preexec_fn` for a child a test will Ctrl-C: SIGINT back to its default, which Python turns into
    KeyboardInterrupt. A shell ignores SIGINT in commands it starts in the background, and the child inherits that,
    so a suite run as `bash .ci/run &` would otherwise see every interrupt test hang."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
