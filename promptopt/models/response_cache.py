"""On-disk cache of model responses keyed by the full request, so a re-run of a finished run calls no model.

A request is everything that decides the answer (endpoint, model, messages, tools, sampling parameters, seed and,
for sampled calls, the sample index); its SHA-256 over canonical JSON names one file under the cache folder.
Files are written to a temporary name and renamed, so a killed process never leaves a half-written entry.
An entry holds the reply (and who made it), not the request: its file name is the request's digest. API keys are
never part of a request. What invalidates an answer is a change to any of those parts; a different model behind the
same name and URL does not, so after such a change run with `--no-cache` or `promptopt cache clear`.

The folder is capped at `$PROMPTOPT_CACHE_MAX_MB` (default 2048): past it, the oldest entries are removed until it is
under 90 % of the cap. The folder is measured once, at a process's first write, then kept as a running total of
that process's own writes, so a write never walks the folder unless the total passes the cap (other processes'
writes are seen at that walk). `promptopt cache stats|clear` look after it by hand.

Each entry also names the run and process it was made for (`making_calls_for`), so a resumed run can tell the calls
its killed process made and paid for but never recorded from true cache hits: the first answer of such an entry
is a call the run paid for (`Cached.paid_by_this_run`), as the uninterrupted run would have recorded it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

DEFAULT_MAX_MB = 2048
PROCESS = uuid.uuid4().hex
"""This process, as cache entries name the process that made them."""


def request_key(request: dict[str, Any]) -> str:
    """Stable hex digest of a request: key order and whitespace do not matter, every value does."""
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Cached:
    """A stored response; `paid_by_this_run` when it was made for the run now making calls by an earlier process
    that did not record it (a killed one), and this process has not answered from it before."""

    response: dict[str, Any]
    paid_by_this_run: bool = False


class ResponseCache:
    """Maps requests to stored responses (JSON objects) in `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.run_id: str | None = None
        self._claimed: set[str] = set()
        self._guard = threading.Lock()
        self._bytes: int | None = None
        """The folder's size as this process knows it: measured at its first write, then its own writes added."""

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    @contextlib.contextmanager
    def making_calls_for(self, run_id: str) -> Iterator[None]:
        """Stamp the entries written in the block with `run_id` (and this process), and tell the entries an earlier
        process made for it apart from cache hits."""
        self.run_id, self._claimed = run_id, set()
        try:
            yield
        finally:
            self.run_id = None

    def get(self, request: dict[str, Any]) -> Cached | None:
        """The stored response for `request`, or None; an unreadable entry counts as a miss."""
        key = request_key(request)
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("response"), dict):
            return None
        origin = entry.get("origin") or {}
        paid = False
        if self.run_id is not None and origin.get("run") == self.run_id and origin.get("process") != PROCESS:
            with self._guard:
                paid = key not in self._claimed
                self._claimed.add(key)
        return Cached(entry["response"], paid)

    def put(self, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Store `response` for `request`, atomically, naming the run and process it was made for; an OS error (a
        full disk) names the entry it could not write."""
        path = self._path(request_key(request))
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        data = json.dumps({"response": response, "origin": {"run": self.run_id, "process": PROCESS}},
                          ensure_ascii=False).encode("utf-8")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.replace(temporary, path)
        except BaseException as error:
            Path(temporary).unlink(missing_ok=True)
            if isinstance(error, OSError) and not error.filename:
                raise OSError(error.errno, error.strerror, str(path)) from error
            raise
        with self._guard:
            if self._bytes is not None:
                self._bytes += len(data)
            known = self._bytes
        if known is None:  # this process's first write: measure the folder, this entry included
            known = self._bytes = cache_stats(self.directory).bytes
        if known > max_cache_bytes():
            left = evict(self.directory, max_cache_bytes())
            with self._guard:
                self._bytes = left


@contextlib.contextmanager
def calls_for_run(run_id: str, *backends: Any) -> Iterator[None]:
    """While the block runs, the response caches of `backends` (those that have one) make calls for `run_id`."""
    caches = {id(cache): cache for backend in backends
              if isinstance(cache := getattr(backend, "cache", None), ResponseCache)}
    with contextlib.ExitStack() as stack:
        for cache in caches.values():
            stack.enter_context(cache.making_calls_for(run_id))
        yield


@dataclass(frozen=True)
class CacheStats:
    """What a cache folder holds: entries, bytes, and when the oldest and newest were written (epoch seconds)."""

    entries: int
    bytes: int
    oldest: float | None
    newest: float | None


def _entries(directory: Path) -> list[tuple[Path, os.stat_result]]:
    found = []
    for path in directory.glob("*/*.json"):
        with contextlib.suppress(FileNotFoundError):
            found.append((path, path.stat()))
    return found


def cache_stats(directory: str | Path) -> CacheStats:
    """Entries, size and age of the cache in `directory`."""
    entries = _entries(Path(directory))
    times = [stat.st_mtime for _, stat in entries]
    return CacheStats(len(entries), sum(stat.st_size for _, stat in entries), min(times, default=None),
                      max(times, default=None))


def clear_cache(directory: str | Path, older_than_s: float | None = None) -> int:
    """Remove the entries (all, or those written more than `older_than_s` seconds ago); how many were removed."""
    cutoff = None if older_than_s is None else time.time() - older_than_s
    removed = 0
    for path, stat in _entries(Path(directory)):
        if cutoff is None or stat.st_mtime < cutoff:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def evict(directory: str | Path, max_bytes: int) -> int:
    """Past `max_bytes`, remove the oldest entries until the folder holds under 90 % of it; the bytes it holds after."""
    entries = _entries(Path(directory))
    total = sum(stat.st_size for _, stat in entries)
    if total <= max_bytes:
        return total
    for path, stat in sorted(entries, key=lambda entry: entry[1].st_mtime):
        if total < 0.9 * max_bytes:
            break
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        total -= stat.st_size
    return total


def max_cache_bytes() -> int:
    """The cache folder's cap: `$PROMPTOPT_CACHE_MAX_MB` megabytes (default 2048)."""
    raw = os.environ.get("PROMPTOPT_CACHE_MAX_MB", "").strip()
    try:
        megabytes = float(raw) if raw else DEFAULT_MAX_MB
    except ValueError:
        megabytes = DEFAULT_MAX_MB
    return int(max(megabytes, 0) * 1024 * 1024)
