"""The response cache a user can manage: entries hold the reply, not the request; the folder stays under its cap;
`promptopt cache stats` says what it holds and `promptopt cache clear [--older-than DAYS]` empties it."""
from __future__ import annotations

import json
import os
import time

from click.testing import CliRunner

from promptopt.cli import main
from promptopt.models.response_cache import ResponseCache, cache_stats


def request(i: int) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": f"question {i} " + "x" * 2000}]}


def test_an_entry_holds_the_reply_not_the_request(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put(request(1), {"text": "answer"})
    (entry,) = tmp_path.glob("*/*.json")
    stored = json.loads(entry.read_text(encoding="utf-8"))
    assert "request" not in stored and stored["response"] == {"text": "answer"}
    assert entry.stat().st_size < 200 and cache.get(request(1)).response == {"text": "answer"}


def test_the_folder_is_kept_under_its_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTOPT_CACHE_MAX_MB", "0.01")  # about 10 KB: a few dozen entries
    cache = ResponseCache(tmp_path)
    for i in range(501):
        cache.put(request(i), {"text": "y" * 100})
    found = cache_stats(tmp_path)
    assert 0 < found.bytes <= 0.01 * 2**20 and found.entries < 501
    assert cache.get(request(500)) is not None  # the newest stay


def test_cache_stats_and_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path))
    cache = ResponseCache(tmp_path)
    for i in range(3):
        cache.put(request(i), {"text": str(i)})
    old = next(tmp_path.glob("*/*.json"))
    os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    runner = CliRunner()
    stats = runner.invoke(main, ["cache", "stats"])
    assert stats.exit_code == 0 and f"{tmp_path}: 3 replies" in stats.output and "oldest 3.0 days old" in stats.output
    cleared = runner.invoke(main, ["cache", "clear", "--older-than", "1", "--yes"])
    assert cleared.exit_code == 0 and "removed 1 cached replies" in cleared.output and not old.exists()
    refused = runner.invoke(main, ["cache", "clear"], input="n\n")
    assert refused.exit_code == 1 and cache_stats(tmp_path).entries == 2
    assert "removed 2" in runner.invoke(main, ["cache", "clear", "--yes"]).output
    assert cache_stats(tmp_path).entries == 0
