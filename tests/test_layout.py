"""The package layout is the architecture: dependencies point down, and no two subpackages import each other."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "saem"
# what each bottom layer may import besides itself (top-level modules: errors, settings, testing)
FOUNDATIONS = {"store": set(), "text": set(), "models": set()}


def _imports() -> dict[str, dict[str, str]]:
    """subpackage -> {imported subpackage: one file that imports it}, every import counted
    (module level or inside a function)."""
    edges: dict[str, dict[str, str]] = defaultdict(dict)
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if len(parts) < 2:
            continue  # top-level modules (the facade's lazy re-exports, errors, settings)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                bits = name.split(".")
                if bits[0] == "saem" and len(bits) > 1 and (ROOT / bits[1]).is_dir() and bits[1] != parts[0]:
                    edges[parts[0]].setdefault(bits[1], str(path.relative_to(ROOT.parent)))
    return edges


@pytest.mark.unit
def test_no_two_subpackages_import_each_other() -> None:
    edges = _imports()
    cycles = [(a, b, edges[a][b], edges[b][a]) for a in edges for b in edges[a] if a < b and a in edges.get(b, {})]
    assert not cycles, f"package cycles (a, b, a's import, b's import): {cycles}"


@pytest.mark.unit
def test_the_bottom_layers_import_no_other_subpackage() -> None:
    edges = _imports()
    wrong = {pkg: edges.get(pkg, {}) for pkg, allowed in FOUNDATIONS.items() if set(edges.get(pkg, {})) - allowed}
    assert not wrong, f"store/, text/ and models/ must not import other subpackages: {wrong}"
