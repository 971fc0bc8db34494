"""The import graph of ``circuit_atlas`` has no cycles between modules.

The graph is built from the source with :mod:`ast`, not by importing it, so an import hidden
inside a function counts as much as one at the top of a module:

- every ``import circuit_atlas.x`` and ``from circuit_atlas.x import y`` anywhere in a module
  (module level, inside functions and classes, under ``if TYPE_CHECKING:``) is an edge;
  relative imports are resolved against the importing module's package;
- ``from pkg import name`` where ``pkg.name`` is a module is an edge to that submodule; where
  ``name`` is a name the package's ``__init__`` re-exports (``from pkg.sub import name`` in the
  ``__init__``, or a lazy ``_EXPORTS``/``_LAZY`` table naming the submodule), the edge goes to
  the submodule that defines it, so a cycle cannot hide behind a package facade;
- ``importlib.import_module("circuit_atlas.x")`` with a literal name is an edge.

- importing ``pkg.sub`` is also an edge to ``pkg`` (Python runs the package's ``__init__``
  first), unless the importer is inside ``pkg``; a package ``__init__`` that re-exports its
  submodules eagerly has edges to them. So ``graph.py`` importing ``models.spec`` depends on
  everything ``models/__init__`` imports, as it does at run time.

No exemption is made: a cycle through a package facade is a real circular import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import circuit_atlas

SRC = Path(circuit_atlas.__file__).parent
LAZY_TABLES = ("_EXPORTS", "_LAZY")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve_from(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _reexports(modules: dict[str, Path], top: str) -> dict[str, dict[str, str]]:
    """Package → {name it re-exports: the module that defines the name}."""
    table: dict[str, dict[str, str]] = {}
    for module, path in modules.items():
        if path.name != "__init__.py":
            continue
        names: dict[str, str] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                source = _resolve_from(node, module)
                if source.startswith(module + ".") and source in modules:
                    names.update({a.asname or a.name: source for a in node.names})
            targets = (
                [t.id for t in node.targets if isinstance(t, ast.Name)]
                if isinstance(node, ast.Assign)
                else [node.target.id]
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                else []
            )
            value = getattr(node, "value", None)
            if any(t in LAZY_TABLES for t in targets) and isinstance(value, ast.Dict):
                for key, val in zip(value.keys, value.values, strict=True):
                    if not (isinstance(key, ast.Constant) and isinstance(val, ast.Constant)):
                        continue
                    target = str(val.value)
                    target = target if target.startswith(top + ".") else f"{module}.{target}"
                    if target in modules:
                        names[str(key.value)] = target
        table[module] = names
    return table


def import_graph(root: Path = SRC) -> dict[str, dict[str, int]]:
    """Module → {module it imports: line of the first such import}, within the package at root."""
    top = root.name
    modules = _modules(root)
    reexports = _reexports(modules, top)
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        package = _package_of(module, path)
        edges: dict[str, int] = {}

        def add(target: str, line: int, module: str = module, edges: dict = edges) -> None:
            while target and target not in modules:  # `import a.b.name` of a non-module name
                target = target.rpartition(".")[0]
            if target and target != module:
                edges.setdefault(target, line)
            # Importing a.b.c first runs a/__init__ and a/b/__init__ (unless the importer is
            # inside them already: then they are being initialised).
            parent = target.rpartition(".")[0]
            while parent and not (module == parent or module.startswith(parent + ".")):
                edges.setdefault(parent, line)
                parent = parent.rpartition(".")[0]

        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == top or alias.name.startswith(top + "."):
                        add(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve_from(node, package)
                if not (source == top or source.startswith(top + ".")):
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:
                        add(sub, node.lineno)
                    else:
                        add(reexports.get(source, {}).get(alias.name, source), node.lineno)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith(top + ".")
            ):
                add(str(node.args[0].value), node.lineno)
        graph[module] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), each as
    the list of modules along it, first module repeated at the end."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # recursion depth ≤ number of modules (~100)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, c) for c in components]


def _cycle_in(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's smallest module (breadth-first)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w in component and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{component} is not strongly connected")


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:], strict=False)]
    return "; ".join(steps)


def test_no_import_cycles_between_modules():
    graph = import_graph()
    assert len(graph) > 50 and "circuit_atlas.study.runner" in graph  # the scan saw the package
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


def package_graph(graph: dict[str, dict[str, int]], top: str = SRC.name) -> dict[str, dict]:
    """Collapse the module graph onto the top level.

    ``circuit_atlas.models.sources`` becomes ``circuit_atlas.models``; top-level modules
    (``circuit_atlas.graph``) stay themselves; the root package's lazy facade is left out.
    """

    def outer(module: str) -> str:
        return ".".join(module.split(".")[:2])

    collapsed: dict[str, dict[str, int]] = {}
    for module, edges in graph.items():
        into = collapsed.setdefault(outer(module), {})
        if module == top:
            continue
        for target, line in edges.items():
            if outer(target) != outer(module):
                into.setdefault(outer(target), line)
    return collapsed


def test_no_import_cycles_between_packages():
    """The arrows between packages run one way (``models`` → ``graph``, never back)."""
    packages = package_graph(import_graph())
    assert "circuit_atlas.graph" in packages["circuit_atlas.models"]
    cycles = find_cycles(packages)
    assert not cycles, "package cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_detector_finds_function_level_relative_and_reexported_cycles(tmp_path):
    pkg = _write(tmp_path / "pkg", {
        "__init__.py": "",
        "a.py": "def f():\n    from .b import g\n",  # function level, relative
        "b.py": "import pkg.a\n",
        "sub/__init__.py": "from pkg.sub.impl import thing\n_EXPORTS = {'lazy': 'other'}\n",
        "sub/impl.py": "from pkg.c import h\n",
        "sub/other.py": "",
        "c.py": "from pkg.sub import thing\n",  # through the facade: c -> sub.impl -> c
        "d.py": "from pkg import sub\nimport importlib\nimportlib.import_module('pkg.e')\n",
        "e.py": "from pkg.sub import lazy\n",
    })  # fmt: skip
    graph = import_graph(pkg)
    assert graph["pkg.c"] == {"pkg.sub.impl": 1, "pkg.sub": 1}  # the facade runs first
    assert graph["pkg.d"] == {"pkg.sub": 1, "pkg.e": 3}
    assert graph["pkg.e"] == {"pkg.sub.other": 1, "pkg.sub": 1}
    assert graph["pkg.sub"] == {"pkg.sub.impl": 1}  # eager re-export; the lazy table is not
    assert graph["pkg.sub.impl"] == {"pkg.c": 1}  # inside pkg.sub: no edge to its __init__
    cycles = sorted(find_cycles(graph))
    assert cycles == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.c", "pkg.sub.impl", "pkg.c"]]  # shortest
    assert "pkg.a (line 2) -> pkg.b" in _describe(graph, cycles[0])
    packages = sorted(find_cycles(package_graph(graph, "pkg")))
    assert packages == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.c", "pkg.sub", "pkg.c"]]


def test_detector_accepts_an_acyclic_package(tmp_path):
    pkg = _write(tmp_path / "pkg", {
        "__init__.py": "from pkg.a import f\n",
        "a.py": "from pkg import b\n",
        "b.py": "from . import c\n",
        "c.py": "import os\n",
    })  # fmt: skip
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b": 1} and graph["pkg.b"] == {"pkg.c": 1}
    assert find_cycles(graph) == []
