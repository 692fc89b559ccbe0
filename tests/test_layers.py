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
