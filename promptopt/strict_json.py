"""Input JSON read strictly, and the values every store holds alike.

`json.loads` lets through what a store keeps differently or not at all: a key given twice (the last silently
wins), a number that is not finite (SQLite keeps `NaN`, PostgreSQL refuses it halfway through an import), a lone
surrogate (no store can encode it) and nesting deep enough to crash the parser. `loads` refuses each with the line
it is on; `unstorable` finds them, and NUL characters, in values built some other way.
"""
from __future__ import annotations

import json
import math
import re
from json.decoder import JSONArray, JSONObject
from json.scanner import py_make_scanner
from typing import Any, Callable

MAX_DEPTH = 100
"""How deep input JSON may nest: far more than a case or a tool schema needs, far less than crashes the parser."""
NUL_MESSAGE = "contains a NUL character (\\u0000), which the store cannot hold"
SURROGATE_MESSAGE = "contains a lone surrogate (\\ud800 to \\udfff), which the store cannot hold"
NON_FINITE_MESSAGE = "is not a finite number, which the store cannot hold"
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    """A value the decoder refuses; the innermost object or array being decoded gives it a position."""


def loads(text: str) -> Any:
    """`text` decoded as JSON; `json.JSONDecodeError` (with line and column) for invalid JSON and for a key repeated
    in one object, a number that is not finite, a lone surrogate or nesting deeper than `MAX_DEPTH`."""
    try:
        value = _StrictDecoder().decode(text)
    except _Refused as refused:
        raise json.JSONDecodeError(str(refused), text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError(f"nested more than {MAX_DEPTH} levels deep", text, 0) from None
    if isinstance(value, str) and _SURROGATE.search(value):
        raise json.JSONDecodeError(f"a string {SURROGATE_MESSAGE}", text, 0)
    return value


class _StrictDecoder(json.JSONDecoder):
    """`json.JSONDecoder` on its pure-Python scanner, whose objects and arrays pass through `_checked`."""

    def __init__(self) -> None:
        super().__init__(parse_float=_float, parse_int=_integer, parse_constant=_constant)
        self.depth = 0
        self.parse_object = self._object
        self.parse_array = self._array
        self.scan_once = py_make_scanner(self)

    def _object(self, s_and_end: tuple[str, int], strict: bool, scan_once: Callable[..., Any], object_hook: Any,
                object_pairs_hook: Any, memo: dict[str, str] | None = None) -> tuple[dict[str, Any], int]:
        pairs, end = self._checked(s_and_end, lambda: JSONObject(s_and_end, strict, scan_once, None, list, memo))
        return dict(pairs), end

    def _array(self, s_and_end: tuple[str, int], scan_once: Callable[..., Any]) -> tuple[list[Any], int]:
        return self._checked(s_and_end, lambda: JSONArray(s_and_end, scan_once))

    def _checked(self, s_and_end: tuple[str, int], parse: Callable[[], tuple[list[Any], int]]) -> tuple[Any, int]:
        """Parse one object or array (`parse`: its pairs or items), refusing what `loads` refuses at its opening
        bracket's position."""
        text, end = s_and_end
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
            items, after = parse()
            _refuse_members(items)
            return items, after
        except _Refused as refused:
            raise json.JSONDecodeError(str(refused), text, end - 1) from None
        finally:
            self.depth -= 1


def _refuse_members(items: list[Any]) -> None:
    """Raise `_Refused` for a repeated key or a string with a lone surrogate among an object's pairs (tuples) or
    an array's items."""
    keys: set[str] = set()
    for item in items:
        if isinstance(item, tuple):
            key, item = item
            if key in keys:
                raise _Refused(f"key {key!r} appears twice in one object")
            keys.add(key)
            if _SURROGATE.search(key):
                raise _Refused(f"a key {SURROGATE_MESSAGE}")
        if isinstance(item, str) and _SURROGATE.search(item):
            raise _Refused(f"a string {SURROGATE_MESSAGE}")


def _float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _Refused(f"{token} {NON_FINITE_MESSAGE}")
    return value


def _constant(token: str) -> float:
    raise _Refused(f"{token} {NON_FINITE_MESSAGE}")


def _integer(token: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise _Refused(f"a number of {len(token):,} digits is too long") from None


def unstorable(value: Any, field: str = "") -> list[tuple[str, str]]:
    """(field, message) for each text (key or string) of a JSON-like value holding a NUL character or a lone
    surrogate and each number that is not finite, fields named like `context[0].content`, in document order."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any, str]] = [(field, value, "")]
    while stack:
        where, item, key = stack.pop()
        found += [(where, message) for message in _text_problems(key)]
        if isinstance(item, dict):
            named = [(_shown(str(k)), child, str(k)) for k, child in item.items()]
            stack += reversed([(f"{where}.{name}" if where else name, child, k) for name, child, k in named])
        elif isinstance(item, (list, tuple)):
            stack += reversed([(f"{where}[{index}]", child, "") for index, child in enumerate(item)])
        elif isinstance(item, str):
            found += [(where, message) for message in _text_problems(item)]
        elif isinstance(item, float) and not math.isfinite(item):
            found.append((where, f"{item} {NON_FINITE_MESSAGE}"))
    return list(dict.fromkeys(found))


def _text_problems(text: str) -> list[str]:
    """Why a text cannot be stored: a NUL character, a lone surrogate (both, or neither)."""
    return [message for bad, message in (("\x00" in text, NUL_MESSAGE),
                                         (bool(_SURROGATE.search(text)), SURROGATE_MESSAGE)) if bad]


def _shown(key: str) -> str:
    """A key as a field name can show it: NUL and lone surrogates written as escapes."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", key.replace("\x00", "\\u0000"))
