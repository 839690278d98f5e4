"""Command-line flags made from the run settings' declarations (`promptopt.run_settings`): the flag, type, bounds,
default and help of each come from its one declaration, and the values come back under the setting's name."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable

import click

from promptopt.run_settings import SETTINGS, Setting


def click_type(setting: Setting) -> Any:
    """The click type that checks a setting's values as its declaration says."""
    if setting.choices_from:
        module, _, attribute = setting.choices_from.partition(":")
        return click.Choice(sorted(getattr(importlib.import_module(module), attribute)))
    if setting.type in (int, float) and (setting.minimum is not None or setting.maximum is not None):
        kind = click.IntRange if setting.type is int else click.FloatRange
        return kind(setting.minimum, setting.maximum, min_open=setting.open_below, max_open=setting.open_above)
    if setting.type.__name__ == "Path":
        return click.Path(dir_okay=False)
    return {int: click.INT, float: click.FLOAT, bool: click.BOOL}.get(setting.type, click.STRING)


def setting_option(setting: Setting, **overrides: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding the flag of `setting` (its parameter named as the setting), with `overrides` of click's
    keywords (another help or default for one command)."""
    keywords: dict[str, Any] = {"default": setting.default, "help": setting.help, "multiple": setting.multiple}
    if setting.type is bool:
        if setting.switch:
            keywords["show_default"] = True
        else:
            keywords["is_flag"] = True
    else:
        keywords.update(type=click_type(setting), metavar=setting.metavar,
                        show_default=setting.default is not None and not setting.multiple)
    if setting.multiple:
        keywords["default"] = ()
    keywords.update(overrides)
    return click.option(*setting.flags, setting.name, **keywords)


def setting_flags(names: Iterable[str], overrides: dict[str, dict[str, Any]] | None = None
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding the flags of the named settings to a command, in the order given."""
    overrides = overrides or {}

    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(list(names)):
            command = setting_option(SETTINGS[name], **overrides.get(name, {}))(command)
        return command

    return add


def setting_values(values: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The named settings' values taken out of a command's keyword arguments (`values` keeps the rest), a repeated
    flag given no time as None (the setting's default)."""
    taken = {}
    for name in names:
        value = values.pop(name)
        taken[name] = (list(value) or None) if SETTINGS[name].multiple else value
    return taken
