"""The package's layers import one way only (docs/architecture.md).

Every ``import`` and ``from ... import`` in every module of ``pythia_data`` is read with
``ast`` — module level, inside functions, under ``if TYPE_CHECKING``, everywhere — and
each edge between two of our modules must point to the same or a lower layer; modules of
one layer must not import each other in a cycle either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "pythia_data"

#: Lowest first. A module belongs to the first entry that is a prefix of its dotted name
#: (after ``pythia_data.``). Entries on one line share a layer and must not import each
#: other (``tokenize`` and ``hub`` are siblings).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "progress", "cancel"),
    ("kernels",),
    ("format",),
    ("io",),
    ("dataset", "integrity"),
    ("jobs",),
    ("shards",),
    ("order",),
    ("batches",),
    ("tokenize", "hub"),
    ("find",),
    ("demo",),
    ("cli", "__main__"),
]
SIBLINGS_INDEPENDENT = {("dataset", "integrity"), ("tokenize", "hub")}


def _unit(dotted: str) -> str:
    """The layer entry a module belongs to (``pythia_data.order.cache`` -> ``order``)."""
    parts = dotted.split(".")
    if parts[0] != "pythia_data":
        raise ValueError(dotted)
    return parts[1] if len(parts) > 1 else ""


def _rank(unit: str) -> int:
    for i, names in enumerate(LAYERS):
        if unit in names:
            return i
    raise KeyError(unit)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import of ``pythia_data`` in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, node.lineno))
            # "from pythia_data import order" imports the subpackage itself
            if mod == "pythia_data":
                out += [(f"pythia_data.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                out.append((str(node.args[0].value), node.lineno))
    return [(m, n) for m, n in out if m == "pythia_data" or m.startswith("pythia_data.")]


def _edges() -> list[tuple[str, str, str, int]]:
    """``(from module, to module, file, line)`` over the whole package."""
    edges = []
    for path in sorted(PKG.rglob("*.py")):
        me = _module_name(path)
        for target, line in _imports(path):
            edges.append((me, target, str(path.relative_to(PKG.parent)), line))
    return edges


def test_every_module_has_a_layer():
    units = {_unit(_module_name(p)) for p in PKG.rglob("*.py")} - {""}
    unknown = sorted(u for u in units if not any(u in names for names in LAYERS))
    assert not unknown, f"modules outside every layer (add them to LAYERS and the docs): {unknown}"


def test_imports_point_down_only():
    bad = []
    for me, target, where, line in _edges():
        src, dst = _unit(me), _unit(target)
        if dst == "" or src == "":
            continue  # the top-level package (version only) may be imported by anyone
        if _rank(dst) > _rank(src):
            bad.append(f"{where}:{line}: {me} ({src}) imports {target} ({dst}), a higher layer")
        elif _rank(dst) == _rank(src) and src != dst:
            pair = tuple(sorted((src, dst)))
            if pair in {tuple(sorted(p)) for p in SIBLINGS_INDEPENDENT}:
                bad.append(f"{where}:{line}: {me} imports its sibling layer {target}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p) for p in PKG.rglob("*.py")}
    for me, target, _where, _line in _edges():
        # "from pythia_data.order.cache import X" is an edge to that module; an edge to a
        # package means its __init__
        while target not in modules and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in modules and target != me:
            graph.setdefault(me, set()).add(target)
    # a package's __init__ re-exporting its own submodules is not a cycle with them
    for me in list(graph):
        graph[me] = {t for t in graph[me] if not t.startswith(me + ".")}

    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("source", [
    "import pythia_data.cli\n",
    "def f():\n    from pythia_data.batches import write_batches\n",
    "from .. import cli\n",
])
def test_the_checker_sees_upward_imports(tmp_path, monkeypatch, source):
    """The walk must catch module-level, function-level and relative imports."""
    fake_pkg = tmp_path / "pythia_data"
    (fake_pkg / "format").mkdir(parents=True)
    (fake_pkg / "__init__.py").write_text("")
    (fake_pkg / "format" / "__init__.py").write_text("")
    (fake_pkg / "format" / "bad.py").write_text(source)
    monkeypatch.setattr(__import__(__name__, fromlist=["PKG"]), "PKG", fake_pkg)
    with pytest.raises(AssertionError, match="higher layer"):
        test_imports_point_down_only()
