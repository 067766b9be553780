"""The import layers of docs/DESIGN.md, enforced: a module imports only from its own layer or lower ones, and
the modules' import graph (lazy imports inside functions and ``TYPE_CHECKING`` imports included) has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "agentsim"

LAYERS: list[tuple[str, ...]] = [
    ("agentsim.__main__", "agentsim"),  # the package facade: no agentsim module imports it
    ("agentsim.cli",),
    ("agentsim.report",),
    ("agentsim.planning",),
    ("agentsim.api", "agentsim.preflight"),
    ("agentsim.store", "agentsim.spill"),
    ("agentsim.analysis",),
    ("agentsim.engine.sim", "agentsim.engine.agents", "agentsim.engine.records"),
    ("agentsim.resolve",),
    ("agentsim.serving",),
    ("agentsim.traces",),
    ("agentsim.workload",),
    ("agentsim.perf",),
    ("agentsim.catalog",),
    ("agentsim.spec",),
    ("agentsim.engine.clock", "agentsim.engine.events", "agentsim.engine.minheap", "agentsim.engine"),
    ("agentsim.columns", "agentsim.files", "agentsim.errors", "agentsim.rng", "agentsim.build", "agentsim._version",
     "agentsim.yamlio"),
]
"""Top to bottom. A name matches a module and everything below it in the package tree; the longest match wins
(``agentsim.engine.events``, the clock's kernel, sits below ``agentsim.engine.sim``, which wires the run)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS (and to docs/DESIGN.md)"
    return best


def imports_of(path: Path, module: str) -> set[str]:
    """The agentsim modules ``path`` imports anywhere in it (``from agentsim.x import y`` counts as importing
    ``agentsim.x.y`` when that is a module, else ``agentsim.x``)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "agentsim")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            if base.split(".")[0] != "agentsim":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if _is_module(sub) else base)
    out.discard(module)
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p, module_name(p)) for p in sorted(SRC.rglob("*.py"))}


def test_every_module_has_a_layer() -> None:
    for module in graph():
        layer_of(module)


def test_nothing_imports_upward() -> None:
    upward = []
    for module, deps in graph().items():
        for dep in sorted(deps):
            if layer_of(dep) < layer_of(module):
                upward.append(f"{module} (layer {layer_of(module)}) imports {dep} (layer {layer_of(dep)})")
    assert upward == []


def test_no_import_cycles() -> None:
    g = graph()
    # Ancestor packages are imported first by Python but are not edges of the design; only explicit imports.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep):], dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The scan itself: a lazy import inside a function, a relative import and a TYPE_CHECKING import count."""
    f = tmp_path / "mod.py"
    f.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from agentsim.serving.replica import Replica\n"
        "def f():\n    from agentsim import api\n    from agentsim.engine.events import Event\n"
    )
    found = imports_of(f, "agentsim.serving.call")
    assert {"agentsim.serving.replica", "agentsim.api", "agentsim.engine.events"} <= found
    assert layer_of("agentsim.api") < layer_of("agentsim.serving.call")
