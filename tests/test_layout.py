"""The test suite's layout: fakes and plain helpers live in support modules (`tests/fakes.py`, `tests/support.py`,
...), shared fixtures in `tests/conftest.py`, so no module under `tests/` imports a test module or conftest and
each test module can be moved, renamed or deleted without breaking another."""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_test_modules(source: str) -> set[str]:
    """The test modules (`test_*`) and conftests that `source` imports, in any form: `from tests.X import ...`,
    `import tests.X`, `from tests import X`, relative, or as a top-level name (`tests/` is on `sys.path` under
    pytest), at any depth of the module."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: the package can only be tests/ itself
                module = f"tests.{module}".rstrip(".")
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            first = parts[1] if parts[0] == "tests" and len(parts) > 1 else parts[0]
            if first.startswith("test_") or first == "conftest":
                found.add(first)
    return found


def test_no_module_under_tests_imports_a_test_module_or_conftest():
    offenders = {str(path.relative_to(TESTS)): sorted(imported) for path in sorted(TESTS.rglob("*.py"))
                 if (imported := imported_test_modules(path.read_text(encoding="utf-8")))}
    assert offenders == {}, "move what they share to tests/fakes.py, tests/support.py or a conftest.py fixture"


def test_every_form_of_importing_a_test_module_is_seen():
    source = ("from tests.test_opro import SEED\nimport tests.test_serve\nfrom tests import test_check, fakes\n"
              "from . import test_loop\nfrom .test_judge import x\nfrom tests.conftest import ROOT\nimport conftest\n"
              "def later():\n    from test_apo import cases\n")
    assert imported_test_modules(source) == {"test_opro", "test_serve", "test_check", "test_loop", "test_judge",
                                             "conftest", "test_apo"}
    harmless = "from tests.fakes import SEED\nimport tests.support\nfrom tests import scripted_runs\nimport pytest\n"
    assert imported_test_modules(harmless) == set()
