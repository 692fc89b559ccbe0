"""The packages depend one way: spaces -> search -> model -> metrics -> results, with `internals`
(Ray's and Optuna's private parts) below `search` and `results`. Read from the source, so an import
inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# package -> the project's packages it must never import
FORBIDDEN = {
    "model": {"search", "results", "spaces", "internals", "cluster_check"},
    "results": {"search", "cluster_check"},
    "internals": {"search", "results", "model", "spaces", "cluster_check"},
    "spaces": {"search", "results", "cluster_check"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_the_layers_above_it(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    wrong = {str(f.relative_to(REPO)): sorted(imported_packages(f) & FORBIDDEN[package]) for f in files}
    assert {f: names for f, names in wrong.items() if names} == {}


# Inside search: the commands sit on top; the strategy (searcher, rungs, budgets) and the runtime
# (Ray, devices, locks, storage) know nothing of the engine or of any command.
COMMANDS = {"search.run", "search.retrain.__main__", "search.replay.record"}
INNER = {"search/strategy": COMMANDS | {"search.engine", "search.retrain", "search.replay"},
         "search/runtime": COMMANDS | {"search.engine", "search.strategy", "search.retrain", "search.replay"}}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def under(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_module_of_the_project_imports_a_command():
    files = [f for package in ("model", "search", "results", "spaces", "internals") for f in sorted((REPO / package).rglob("*.py"))]
    wrong = {str(f.relative_to(REPO)): sorted(n for n in imported_modules(f) if n in COMMANDS) for f in files}
    assert {f: names for f, names in wrong.items() if names} == {}


@pytest.mark.parametrize("folder", sorted(INNER))
def test_the_strategy_and_the_runtime_never_import_the_parts_above_them(folder):
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"{folder}/ has no modules"
    wrong = {str(f.relative_to(REPO)): sorted(n for n in imported_modules(f) if under(n, INNER[folder])) for f in files}
    assert {f: names for f, names in wrong.items() if names} == {}


def test_a_search_s_keys_are_checked_without_importing_torch():
    """search.run refuses a bad key or value before it imports torch (about 2 s here): only a search
    that will train needs it (search.engine, imported once the keys are good)."""
    import subprocess
    import sys

    code = "import sys, search.run; print(sorted(m for m in ('torch', 'search.engine') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
