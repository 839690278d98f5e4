"""The layout as installed: every package folder installs, and no import runs up the floors the README's Layout
section draws (shared vocabulary at the bottom, the command line at the top)."""
from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_DIR = PYPROJECT["tool"]["setuptools"]["package-dir"]

FLOORS = (
    ("vocabulary", ("promptopt.case", "promptopt.markup", "promptopt.statistics", "promptopt.progress",
                    "promptopt.chat_request", "promptopt.chat_messages", "promptopt.config", "promptopt.plugins",
                    "promptopt.datasets", "promptopt.run_settings", "promptopt.strict_json", "promptopt.case_selection")),
    ("models", ("promptopt.models",)),
    ("tasks and evaluators", ("promptopt.tasks", "promptopt.evaluators")),
    ("store", ("promptopt.runs",)),
    ("engine", ("promptopt.optimizer",)),
    ("front door", ("promptopt.request", "promptopt.api", "promptopt.server", "promptopt")),
    ("command line", ("promptopt.cli",)),
)
"""Bottom first; a module imports only from its own floor and those below."""


def installed_modules() -> dict[str, Path]:
    """Every module of the installed package by import name, found through pyproject's package-dir."""
    modules = {}
    for package, folder in PACKAGE_DIR.items():
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            if any(PACKAGE_DIR.get(".".join([package, *parts[:i + 1]])) for i in range(len(parts))):
                continue  # a folder mapped on its own
            modules[".".join([package, *parts])] = path
    return modules


def floor_of(module: str) -> int:
    """The floor of `module`: that of the longest name in FLOORS it falls under."""
    best, floor = "", -1
    for index, (_, names) in enumerate(FLOORS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, floor = name, index
    assert floor >= 0, f"{module} is on no floor: add it to FLOORS (and the README's Layout)"
    return floor


def imported(module: str, path: Path) -> set[str]:
    """The promptopt modules `path` imports (at any depth in the file: a lazy import counts too)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "promptopt" or name.startswith("promptopt.")}


def test_every_package_folder_installs():
    """A folder with an `__init__.py` under a mapped top-level folder is listed in pyproject's packages, or it
    would silently not install."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    folders = {name for name, path in installed_modules().items() if path.name == "__init__.py"}
    assert folders - listed == set(), "package folders missing from pyproject's packages"
    assert listed - folders == set(), "pyproject lists packages that have no folder"


def test_no_import_runs_up():
    upward = []
    for module, path in sorted(installed_modules().items()):
        for target in sorted(imported(module, path)):
            if floor_of(target) > floor_of(module):
                upward.append(f"{module} ({FLOORS[floor_of(module)][0]}) imports {target} "
                              f"({FLOORS[floor_of(target)][0]})")
    assert upward == []


def test_the_store_and_tasks_never_import_the_engine_and_only_the_cli_imports_the_cli():
    modules = installed_modules()
    for module, path in modules.items():
        targets = imported(module, path)
        if module.startswith(("promptopt.runs", "promptopt.tasks")):
            assert not any(t.startswith("promptopt.optimizer") for t in targets), module
        if not module.startswith("promptopt.cli"):
            assert not any(t.startswith("promptopt.cli") for t in targets), module
