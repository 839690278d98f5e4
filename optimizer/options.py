"""Strategy options, declared once: name, type, default and help. The command line makes its flags and help from
these declarations, the Python API takes the same names, and `--estimate` reads the same defaults."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence


class OptionError(ValueError):
    """An option a strategy does not take, or a value it cannot use."""


@dataclass(frozen=True)
class Option:
    """One setting of a strategy. `minimum` bounds numbers (inclusive unless `above`); `choices` lists the allowed
    strings; `directory` asks for an existing folder; `default_text` explains a default of None."""

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    above: bool = False
    choices: tuple[str, ...] = ()
    directory: bool = False
    default_text: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe_default(self) -> str:
        return self.default_text or ("none" if self.default is None else str(self.default))

    def parse(self, value: Any) -> Any:
        """`value` checked and converted (strings from `-o key=value` included); raises `OptionError`."""
        if value is None:
            return None
        try:
            if self.type is bool and isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                converted: Any = value.lower() in ("1", "true", "yes")
            elif self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                converted = self.type(value)
        except (TypeError, ValueError):
            raise OptionError(f"{self.flag}: expected {self.type.__name__}, got {value!r}") from None
        if self.minimum is not None and (converted <= self.minimum if self.above else converted < self.minimum):
            bound = "greater than" if self.above else "at least"
            raise OptionError(f"{self.flag}: must be {bound} {self.minimum:g}, got {converted}")
        if self.choices and converted not in self.choices:
            raise OptionError(f"{self.flag}: must be one of {', '.join(self.choices)}, got {converted!r}")
        if self.directory and not Path(converted).is_dir():
            raise OptionError(f"{self.flag}: no such directory: {converted}")
        return converted


def resolve_options(strategy: str, declared: Sequence[Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared option's value: given (checked) or its default. An option the strategy does not declare is
    refused, naming the ones it takes."""
    by_name = {option.name: option for option in declared}
    stray = [name for name in given if name not in by_name]
    if stray:
        takes = ", ".join(o.flag for o in declared) or "no options"
        flags = ", ".join(by_name.get(n, Option(n, str, None, "")).flag for n in stray)
        raise OptionError(f"{flags} do(es) not apply to --strategy {strategy} (it takes {takes})")
    values = {option.name: option.default for option in declared}
    for name, value in given.items():
        if value is not None:
            values[name] = by_name[name].parse(value)
    return values


def parse_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """`key=value` strings (from `-o`) as a dict; dashes in keys read as underscores."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"-o {pair!r}: expected KEY=VALUE")
        parsed[key.strip().replace("-", "_")] = value
    return parsed
