"""The layering the README states: imports flow one way, api -> recommender -> embedding
-> data, with ``musicrec.errors`` and ``musicrec.storage`` below them all; only ``api``
imports Flask; and no two modules import each other at import time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Package folder -> (module prefix, layer); a module may import its own layer and below.
LAYERS = {"data": ("musicrec.data", 1), "embedding": ("musicrec.embedding", 2),
          "recommender": ("musicrec.recommender", 3), "api": ("musicrec.api", 4)}
BASE = {"musicrec", "musicrec.errors", "musicrec.storage"}


def _modules() -> dict[str, tuple[Path, int]]:
    found = {}
    for folder, (prefix, layer) in LAYERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts
                     if p != "__init__"]
            found[".".join([prefix, *parts])] = (path, layer)
    for name in ("errors", "storage"):
        found[f"musicrec.{name}"] = (ROOT / "musicrec" / f"{name}.py", 0)
    return found


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _layer(name: str, modules: dict[str, tuple[Path, int]]) -> int | None:
    if name in BASE:
        return 0
    while name:
        if name in modules:
            return modules[name][1]
        name = name.rpartition(".")[0]
    return None


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_down_the_layers(module: str) -> None:
    path, layer = MODULES[module]
    upward = sorted(name for name in _imports(path, top_level_only=False)
                    if name.startswith("musicrec") and (_layer(name, MODULES) or 0) > layer)
    assert upward == [], f"{module} (layer {layer}) imports a higher layer: {upward}"
    if layer != LAYERS["api"][1]:
        flask = sorted(n for n in _imports(path, top_level_only=False)
                       if n.split(".")[0] in ("flask", "werkzeug", "gunicorn"))
        assert flask == [], f"{module} imports {flask}: only musicrec.api may"


def test_no_import_cycles_at_import_time() -> None:
    graph = {m: {n for n in _imports(p, top_level_only=True) if n in MODULES and n != m}
             for m, (p, _) in MODULES.items()}
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*stack, node], done)
        done.add(node)

    done: set[str] = set()
    for module in sorted(graph):
        visit(module, [], done)
    assert cycles == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from musicrec.api.app import create_app\n")
    names = _imports(bad, top_level_only=False)
    assert _layer("musicrec.api.app", MODULES) == 4 and "musicrec.api.app" in names
    assert _imports(bad, top_level_only=True) == set()
