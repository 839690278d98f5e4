"""Each run setting is declared once (`promptopt.run_settings`): the command line's flags, the Python API's fields,
the stored config and its defaults all come from that declaration, under one name."""
from __future__ import annotations

from dataclasses import fields

import click
import pytest

from promptopt.cli import main
from promptopt.optimizer.budget import Budget
from promptopt.optimizer.loop import RunConfig
from promptopt.request import RunRequest
from promptopt.run_settings import RUN_SETTINGS, SETTINGS


def run_flags() -> dict[str, click.Parameter]:
    command = main.commands["run"]
    return {param.name: param for param in command.get_params(click.Context(command))}


def test_the_python_api_and_the_stored_config_have_exactly_the_declared_settings():
    assert [f.name for f in fields(RunRequest)] == [s.name for s in RUN_SETTINGS if s.request]
    assert [f.name for f in fields(RunConfig)] == [s.name for s in RUN_SETTINGS if s.stored]
    request, config = RunRequest(), RunConfig()
    for setting in RUN_SETTINGS:
        if setting.request and setting.type is not dict:
            assert getattr(request, setting.name) == setting.default, setting.name
        if setting.stored and setting.type is not dict:
            assert getattr(config, setting.name) == setting.config_default, setting.name


def test_every_flagged_setting_is_a_run_flag_named_as_declared_with_its_help_and_default():
    flags = run_flags()
    for setting in RUN_SETTINGS:
        if not (setting.request and setting.flags):
            assert setting.name not in flags
            continue
        flag = flags[setting.name]
        assert flag.opts[0] == setting.flags[0].split("/")[0]
        if setting.name not in ("strategy", "steps"):  # their help lists what is installed
            assert flag.help == setting.help
        assert flag.default == (() if setting.multiple else setting.default)


def test_the_budget_has_one_name_from_flag_to_use():
    flags = run_flags()
    config = RunConfig(budget_calls=5, budget_tokens=100, budget_usd=0.5, budget_seconds=60)
    budget = Budget.of(config)
    for name in ("calls", "tokens", "usd", "seconds"):
        assert flags[f"budget_{name}"].opts == [f"--budget-{name}"]
        assert getattr(budget, f"budget_{name}") == getattr(config, f"budget_{name}")


def test_an_earlier_python_name_is_refused_with_the_name_to_use():
    with pytest.raises(TypeError, match="max_calls= is now budget_calls="):
        RunRequest.build(max_calls=100)


def test_a_config_stored_by_an_earlier_version_reads_under_todays_names():
    stored = {"strategy": "opro", "limits": {"calls": 40, "usd": 1.5}, "strategy_options": {"samples": 4},
              "splits": [0.6, 0.2, 0.2]}
    config = RunConfig.from_json(stored)
    assert (config.budget_calls, config.budget_usd, config.budget_tokens) == (40, 1.5, None)
    assert config.options == {"samples": 4} and config.splits == (0.6, 0.2, 0.2)
    assert config.min_gain == 0.0  # stored before the minimum gain: any gain was accepted
    assert RunConfig.from_json(config.to_json()) == config


def test_check_takes_the_run_settings_it_shares_with_run_from_the_same_declarations():
    command = main.commands["check"]
    params = {param.name: param for param in command.get_params(click.Context(command))}
    for name in ("model", "base_url", "evaluators", "pattern", "check_arguments", "db"):
        assert params[name].help == SETTINGS[name].help
