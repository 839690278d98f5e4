"""A third-party evaluator: a small package, installed into a temporary virtual environment that sees this one,
registers under the `promptopt.evaluators` entry point group and is found and used by name."""
from __future__ import annotations

import json
import site
import subprocess
import sys
import textwrap

import pytest

from promptopt.evaluators import UnknownEvaluator, create

PLUGIN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "promptopt-polite"
        version = "0.3.0"

        [project.entry-points."promptopt.evaluators"]
        polite = "promptopt_polite:Polite"
        tool_call = "promptopt_polite:Polite"
    """,
    "promptopt_polite.py": '''
        class Polite:
            """The reply asks nicely: please or 请."""

            def __init__(self, tools):
                self.tool_count = len(tools)

            def __call__(self, case, output):
                return "请" in output.text or "please" in output.text.lower()
    ''',
}
SCORE_A_CASE = """
import json
from promptopt.case import Case, ToolCall
from promptopt.evaluators import EvaluatorSettings, build_evaluator
tools = [{"type": "function", "function": {"name": "find_stores", "parameters": {}}}]
evaluator = build_evaluator(["polite", "tool_name"], EvaluatorSettings(tools=tools))
case = Case("附近有店吗", ToolCall("find_stores"))
print(json.dumps([dict(evaluator(case, ToolCall("find_stores", text=t)).parts) for t in ("请稍等", "wait")]))
"""


@pytest.fixture(scope="module")
def plugin_python(tmp_path_factory):
    """The Python of a fresh venv that sees this environment (through a .pth that adds its site-packages, so
    their own .pth files, such as an editable promptopt's, run too) with the plugin installed into it."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "promptopt-polite"
    source.mkdir()
    for name, text in PLUGIN.items():
        (source / name).write_text(textwrap.dedent(text), encoding="utf-8")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages())
    (venv.parent / purelib).joinpath("parent_environment.pth").write_text(lines, encoding="utf-8")
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", str(source)]
    # offline with this environment's setuptools when it can build wheels; else pip fetches a build backend
    if subprocess.run(install + ["--no-build-isolation", "--no-index"], capture_output=True).returncode != 0:
        subprocess.run(install, check=True, capture_output=True, text=True)
    return python


def test_plugin_is_listed_by_name_with_its_distribution_and_scores_cases(plugin_python):
    listing = subprocess.run([str(plugin_python), "-m", "promptopt.cli", "evaluators", "list", "--json"],
                             check=True, capture_output=True, text=True)
    found = {e["name"]: e for e in json.loads(listing.stdout)}
    assert found["polite"]["source"] == "promptopt-polite 0.3.0"
    assert found["polite"]["description"] == "The reply asks nicely: please or 请."
    # the plugin's second entry point wants a built-in's name: the built-in stays, and the user is told why
    assert found["tool_call"]["source"] == "built-in"
    assert "evaluator 'tool_call' from promptopt-polite 0.3.0 (promptopt_polite:Polite) is ignored" in listing.stderr
    scored = subprocess.run([str(plugin_python), "-c", SCORE_A_CASE], check=True, capture_output=True, text=True)
    assert json.loads(scored.stdout) == [{"polite": 1.0, "tool_name": 1.0}, {"polite": 0.0, "tool_name": 1.0}]


def test_this_environment_does_not_have_the_plugin():
    with pytest.raises(UnknownEvaluator, match="unknown evaluator 'polite'"):
        create("polite")
