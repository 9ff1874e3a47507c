"""The package's shape (docs/architecture.md): no import cycle, no import from a layer above, small modules.

Every ``import`` inside ``medgan/`` counts, also those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "medgan"

#: Layers from the bottom up; a module may import its own layer and the layers below it.
LAYERS = [
    ("medgan", "medgan.errors", "medgan.io", "medgan.locks", "medgan.outputs", "medgan.runtime", "medgan.config", "medgan.viz"),
    ("medgan.data",),
    ("medgan.models", "medgan.distances"),
    ("medgan.classify",),
    ("medgan.training",),
    ("medgan.synthesis",),
    ("medgan.evaluation",),
    ("medgan.cli", "medgan.__main__"),
]
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """medgan modules imported anywhere in ``path`` (``from medgan.x import y`` counts ``medgan.x.y`` when that is
    a module, else ``medgan.x``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                     for a in node.names]
        else:
            continue
        out |= {n for n in names if n == "medgan" or n.startswith("medgan.")}
    return out


def _layer(mod: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    assert level is not None, f"{mod} is in no layer of tests/test_architecture.py"
    return level


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {i for i in _imports(p, mods) if i in mods and i != m} for m, p in mods.items()}


def test_no_module_imports_from_a_layer_above():
    bad = [f"{m} ({_layer(m)}) imports {i} ({_layer(i)})" for m, deps in _graph().items() for i in sorted(deps)
           if _layer(i) > _layer(m) and i != "medgan"]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    graph["medgan"] = set()  # the package's lazy attribute table imports nothing at import time
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_modules_stay_small():
    big = {m: n for m, p in _modules().items() if (n := p.read_text().count("\n")) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by concept): {big}"


def test_the_checker_sees_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from medgan.evaluation.report import Report\n    import medgan.io\n")
    mods = {"medgan.evaluation.report": f, "medgan.io": f}
    assert _imports(f, mods) == {"medgan.evaluation.report", "medgan.io"}
    assert _layer("medgan.evaluation.report") > _layer("medgan.data.sources") > _layer("medgan.io")
