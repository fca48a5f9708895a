"""The package's import graph: no cycles, no upward imports, the CLI imported by nobody in the core.

Every ``import``/``from ... import`` of a faket module counts, at module level or inside a function (a
function-level import is still a dependency). The layers, lowest first, are what docs/development.md draws.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "faket"

#: lowest first; a module may import its own layer (without cycles) and the layers below it
LAYERS = [
    ("base", ["faket", "faket.errors", "faket.rotation"]),
    ("formats", ["faket.formats"]),
    ("provenance", ["faket.provenance"]),
    ("stages", ["faket.layout", "faket.imaging", "faket.labels"]),
    ("style", ["faket.style"]),
    ("evaluation", ["faket.evaluation"]),
    ("workflow", ["faket.workflow"]),
    ("picker", ["faket.picker"]),
    ("cli", ["faket.cli", "faket.__main__"]),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The faket module a dotted name refers to (a module, or the module defining an attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path) -> set[str]:
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n.startswith("faket"):
                target = _resolve(n)
                if target and target != mod:
                    out.add(target)
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(mod: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for pre in prefixes:
            if (mod == pre or mod.startswith(pre + ".")) and (best is None or len(pre) >= best[1]):
                best = (i, len(pre))
    assert best is not None, f"{mod}: in no layer of tests/test_import_graph.py LAYERS"
    return best[0]


def test_every_module_has_a_layer():
    for m in MODULES:
        _layer(m)


def test_no_upward_imports():
    bad = [
        f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
        for m, ts in GRAPH.items()
        for t in ts
        if _layer(t) > _layer(m) and m != "faket"
    ]  # faket/__init__ only names moved modules in strings
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_core_never_imports_the_cli():
    bad = [
        f"{m} imports {t}"
        for m, ts in GRAPH.items()
        if not m.startswith("faket.cli") and m != "faket.__main__"
        for t in ts
        if t.startswith("faket.cli")
    ]
    assert not bad, "\n".join(bad)


def test_no_cycles():
    """Package __init__ files that re-export their children are edges too: a child importing its own
    package's __init__ would close a cycle (import the sibling module instead)."""
    colour, stack, cycles = {}, [], []

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if colour.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in colour:
                visit(t)
        stack.pop()
        colour[m] = 2

    for m in sorted(GRAPH):
        if m not in colour:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("fixture", ["cycle", "upward"])
def test_the_checks_catch_a_violation(fixture, monkeypatch):
    """The checks are not vacuous: a made-up cycle / upward edge is found."""
    g = {k: set(v) for k, v in GRAPH.items()}
    if fixture == "cycle":
        g["faket.formats.mrc"].add("faket.formats.tiltmeta")  # tiltmeta imports mrc
        monkeypatch.setattr(__import__(__name__), "GRAPH", g)
        with pytest.raises(AssertionError, match="import cycles"):
            test_no_cycles()
    else:
        g["faket.formats.mrc"].add("faket.style.engine")
        monkeypatch.setattr(__import__(__name__), "GRAPH", g)
        with pytest.raises(AssertionError, match="upward imports"):
            test_no_upward_imports()


def test_old_module_names_still_import():
    """Scripts written for the flat layout keep working: every MOVED name imports and forwards to the new home."""
    import importlib

    import faket

    for old, targets in faket.MOVED.items():
        mod = importlib.import_module(old)
        new = importlib.import_module(targets[0])
        public = [n for n in dir(new) if not n.startswith("_")][:5]
        for n in public:
            assert getattr(mod, n) is getattr(new, n), f"{old}.{n}"
    from faket.formats.mrc import read_volume as rv
    from faket.formats.tiltmeta import read_tiltseries as rt
    from faket.io import read_tiltseries, read_volume  # split across formats.mrc and formats.tiltmeta

    assert (read_tiltseries, read_volume) == (rt, rv)
    base = importlib.import_module("faket.templates.base")  # a submodule of a moved package
    from faket.layout.templates.base import Template

    assert base.Template is Template and Template.__module__ == "faket.layout.templates.base"
