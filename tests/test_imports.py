"""Imports point one way: no cycle between manyminds' modules or its top-level parts, counting
imports inside functions (they hide a cycle from Python, not from a reader).

`if TYPE_CHECKING:` blocks are left out: they never run. The layers, bottom to top, are
values (types, errors) -> services (backends, cache, answers) -> plug-ins (aggregators,
verifiers, stopping rules) -> assembly (agents) -> methods (strategies) -> session -> entry
points (bench, cli, server).
"""

from __future__ import annotations

import ast
from pathlib import Path

import manyminds

ROOT = Path(manyminds.__file__).parent


def modules(root: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(root: Path, package: str) -> dict[str, dict[str, bool]]:
    """module -> {imported module: imported only inside functions}, for modules of `package`."""
    known = modules(root, package)

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, bool]] = {}
    for module, path in known.items():
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = graph.setdefault(module, {})

        def walk(node: ast.AST, inside: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _type_checking(child):
                    for other in child.orelse:
                        walk_one(other, inside)
                    continue
                walk_one(child, inside)

        def walk_one(node: ast.AST, inside: bool) -> None:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                names = [f"{base}.{a.name}" for a in node.names]
            else:
                walk(node, inside or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
                return
            for name in names:
                target = resolve(name) if name.split(".")[0] == package else None
                if target and target != module:
                    edges[target] = edges.get(target, True) and inside

        walk(ast.parse(path.read_text()), False)
    return graph


def cycles(graph: dict[str, set[str]] | dict[str, dict[str, bool]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def parts(graph: dict[str, dict[str, bool]], package: str) -> dict[str, set[str]]:
    """The graph between top-level parts (manyminds.answers, manyminds.strategies, ...)."""
    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    joined: dict[str, set[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            if part(target) != part(module) and part(target) != package:
                joined.setdefault(part(module), set()).add(part(target))
    return joined


def test_no_module_imports_another_that_imports_it_back():
    graph = import_graph(ROOT, "manyminds")
    assert graph["manyminds.strategies.base"]["manyminds.session"], "imports inside functions are seen"
    assert cycles(graph) == []


def test_the_parts_of_the_package_import_one_way():
    assert cycles(parts(import_graph(ROOT, "manyminds"), "manyminds")) == []


def test_the_walker_finds_a_cycle_hidden_inside_a_function(tmp_path):
    package = tmp_path / "pkg"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n"
                                  "def f():\n    from pkg.inner import b\n")
    (package / "inner" / "b.py").write_text("from .. import a\n")
    (package / "c.py").write_text("import pkg.a\n")
    graph = import_graph(package, "pkg")
    assert graph["pkg.a"] == {"pkg.inner.b": True}, "TYPE_CHECKING imports never run; the one in f() does"
    assert cycles(graph) == [["pkg.a", "pkg.inner.b"]]
    assert cycles(parts(graph, "pkg")) == [["pkg.a", "pkg.inner"]]


def runtime_imports(tree: ast.AST) -> list[str]:
    """Every module name imported where it runs (not under `if TYPE_CHECKING:`)."""
    names: list[str] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            for other in node.orelse:
                names += runtime_imports(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
        else:
            names += runtime_imports(node)
    return names


def test_langgraph_is_imported_by_the_assembly_and_the_methods_only():
    outside = []
    for module, path in modules(ROOT, "manyminds").items():
        if module.startswith(("manyminds.agents", "manyminds.strategies")):
            continue
        names = runtime_imports(ast.parse(path.read_text()))
        outside += [f"{module}: {n}" for n in names if n.split(".")[0] in ("langgraph", "langchain_core")]
    assert outside == []
    assert "langgraph.graph.state" not in runtime_imports(ast.parse("from typing import TYPE_CHECKING\n"
                                                                    "if TYPE_CHECKING:\n"
                                                                    "    from langgraph.graph.state import X\n"))
    assert runtime_imports(ast.parse("def f():\n    import langgraph\n")) == ["langgraph"]
