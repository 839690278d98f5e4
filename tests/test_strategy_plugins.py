"""A strategy of one's own is one module: written to a temporary folder, it runs from the command line as
`--strategy module:Class` with its own declared option as a flag (or `-o`), against a scripted OpenAI-compatible
endpoint, and nothing else in promptopt learns about it."""
from __future__ import annotations

import json
import re
import textwrap

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter
from tests.support import ROOT

TOY = '''
    """Appends `examples` training cases as example exchanges, the only idea it has."""
    from promptopt.optimizer.candidates import Candidate
    from promptopt.optimizer.options import Option
    from promptopt.optimizer.prompt_text import render_demo
    from promptopt.optimizer.strategy import Proposal, StrategyBase


    class Examples(StrategyBase):
        name = "examples"
        options = (Option("examples", int, 2, "training cases appended as example lines", minimum=1),)

        def expected_calls(self, size):
            return size.steps * size.incumbent_sample

        def propose(self, context, step):
            lines = [render_demo(c) for c in context.train[: self.examples]]
            candidate = Candidate(prompt=context.incumbent.prompt.rstrip() + "\\n\\n" + "\\n".join(lines),
                                  operator="toy-examples", details={"examples": self.examples})
            if context.register(candidate, step):
                return []
            cases = [c for c in context.train if c.id in context.incumbent_train]
            return [Proposal(candidate, context.score(candidate.id, candidate.prompt, cases, "toy"))]
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "toy_strategy.py").write_text(textwrap.dedent(TOY), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    return "toy_strategy:Examples"


@pytest.fixture
def endpoint(expected):
    with ChatServer(ExamplesRouter(expected)) as server:
        yield server.base_url


def test_a_strategy_module_runs_from_the_cli_with_its_own_option(tmp_path, toy_module, endpoint, bundled_case_file):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    common = ["run", "--cases", str(bundled_case_file), "--model", "scripted", "--base-url", endpoint, "--db", db,
              "--quiet"]
    runner = CliRunner()

    shown = runner.invoke(main, ["run", "--strategy", toy_module, "--help"])
    assert shown.exit_code == 0 and "--examples" in shown.output
    assert "training cases appended as example lines [default: 2]" in " ".join(shown.output.split())

    for flags, count in ((["--examples", "7"], 7), (["-o", "examples=5"], 5)):
        result = runner.invoke(main, [*common, "--strategy", toy_module, *flags, "--json"])
        assert result.exit_code == 0, result.output
        run_id = json.loads(result.output.strip().splitlines()[-1])["run_id"]
        (toy,) = [c for c in Store(db).candidates(run_id) if c.operator == "toy-examples"]
        assert toy.details == {"examples": count} and len(toy.prompt.splitlines()) > count

    estimate = runner.invoke(main, [*common, "--strategy", toy_module, "--estimate", "--json"])
    assert estimate.exit_code == 0 and json.loads(estimate.output)["calls"] > 0

    refused = runner.invoke(main, [*common, "--strategy", toy_module, "--n-demos", "3"])
    assert refused.exit_code == 2 and "--n-demos do(es) not apply to --strategy examples (it takes --examples)" in refused.output
    refused = runner.invoke(main, [*common, "--strategy", toy_module, "--examples", "0"])
    assert refused.exit_code == 2 and "--examples: must be at least 1, got 0" in refused.output
    missing = runner.invoke(main, [*common, "--strategy", "toy_strategy:Nope"])
    assert missing.exit_code == 2 and "cannot load toy_strategy:Nope" in missing.output


def test_built_in_options_reach_the_python_api_by_the_same_names(tmp_path):
    from promptopt.optimizer import make_strategy
    from promptopt.optimizer.options import OptionError

    assert make_strategy("opro", {"candidates": "4"}).candidates == 4
    with pytest.raises(OptionError, match="--history: must be at least 1"):
        make_strategy("opro", {"history": 0})
    with pytest.raises(OptionError, match="--beam-width do\\(es\\) not apply to --strategy demos"):
        make_strategy("demos", {"beam_width": 2})


def test_no_strategy_imports_another():
    root = ROOT / "optimizer" / "strategies"
    for path in root.rglob("*.py"):
        if path == root / "__init__.py":
            continue  # the registry names them all
        own = path.stem if path.parent == root else path.parent.name
        imported = re.findall(r"promptopt\.optimizer\.strategies\.(\w+)", path.read_text(encoding="utf-8"))
        assert set(imported) <= {own}, f"{path.relative_to(ROOT)} imports strategy {set(imported) - {own}}"


def test_an_installed_strategy_is_found_by_name_and_cannot_take_a_built_in_one(toy_module, monkeypatch):
    from importlib import metadata

    from promptopt.optimizer import make_strategy, strategy_names
    from promptopt.optimizer import strategies as registry

    entries = [metadata.EntryPoint("examples", toy_module, registry.ENTRY_POINT_GROUP),
               metadata.EntryPoint("demos", toy_module, registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(metadata, "entry_points", lambda group: [e for e in entries if e.group == group])
    registry._plugins.cache_clear()
    try:
        with pytest.warns(UserWarning, match="strategy 'demos' from toy_strategy:Examples .* is ignored: a built-in "
                                             "strategy already has that name"):
            assert strategy_names()[-1] == "examples"
        assert make_strategy("examples", {"examples": 3}).examples == 3
        assert type(make_strategy("demos")).__name__ == "DemosStrategy"
    finally:
        registry._plugins.cache_clear()
