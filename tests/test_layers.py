"""The architecture, checked: every import in core/ (at the top of a module or inside a function) points
down the layers, and no set of modules imports itself round in a circle."""
from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"
# Lowest first. A module may import from its own layer (no circle) or from any layer below it.
LAYERS = [
    ("core.config", "core.progress", "core.astlock", "core.executor"),
    ("core.cache",),
    ("core.data",),
    ("core.embeddings",),
    ("core.explore", "core.recs"),
    ("core.warmup",),
    ("core.serve",),
    ("core.distributed",),
    ("core.bench",),
    ("core.__main__",),
]


def _module(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in sorted(CORE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The core modules ``path`` imports, wherever in the file the import stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def layer_of(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: imports_of(p, known) - {m} - _packages_of(m) for m, p in modules.items()}


def _packages_of(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or one module importing itself."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert circles(graph()) == []


def test_imports_point_down_the_layers():
    upward = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
              for m, deps in graph().items() for d in sorted(deps) if layer_of(d) > layer_of(m)]
    assert upward == []


def test_explore_and_recs_do_not_import_each_other():
    crossing = [f"{m} imports {d}" for m, deps in graph().items() for d in deps
                if {m.split(".")[1], d.split(".")[1]} == {"explore", "recs"}]
    assert crossing == []


def test_the_checker_finds_a_circle_and_an_upward_import(tmp_path):
    edges = {"core.a": {"core.b"}, "core.b": {"core.c"}, "core.c": {"core.a"}, "core.d": set()}
    assert circles(edges) == [["core.a", "core.b", "core.c"]]
    assert layer_of("core.serve.service") > layer_of("core.recs.contract") > layer_of("core.data.catalog")
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from core.serve.service import Service\n")
    assert imports_of(source, {"core.serve.service", "core.serve"}) == {"core.serve.service"}
