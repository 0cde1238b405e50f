"""The import graph of app/ and agents/, read statically (ast, nothing imported):

- app/domain imports nothing of the project outside app.domain (the standard library and
  third-party packages are fine);
- no cycle among the project's modules through module-level imports (what runs at import
  time: the module body, its `if`/`try`/`with` blocks and class bodies; not function bodies,
  and not `if TYPE_CHECKING:` blocks);
- tests/unit stays fast: it imports neither the Faust app (app.main, app.state, agents.*)
  nor a browser, and starts no process (those tests live in tests/agents and tests/process).

Known offenders, if any, are listed below with the issue that removes them: the tests pass
with them and fail on any new one, and also when a listed one is gone (so the list shrinks).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "agents")
DOMAIN = "app.domain"

# (importer, imported) pairs of app/domain importing the project outside app.domain today.
# Issue "One typed control protocol, injected ports, no import cycles, lint and types in CI".
# none left: app.domain imports nothing of the project outside it (errors live in
# app/domain/errors.py)
KNOWN_DOMAIN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()

# Module-level import cycles today, each as the sorted tuple of the modules of one strongly
# connected component. Same issue.
KNOWN_CYCLES: frozenset[tuple[str, ...]] = frozenset()

# The cycles that function-level imports hide (none left: agents.runtime takes its ports
# as arguments; agents/worker.py wires them; app/__init__'s lazy attribute is its own node).
KNOWN_HIDDEN_CYCLE_MODULES: frozenset[str] = frozenset()

# What tests/unit must not import (at any level): the Faust app and what builds it, and the
# browser; and the modules that start processes.
UNIT_FORBIDDEN = (
    "app.main",
    "app.state",
    "app.cli",
    "app.bootstrap",
    "agents",
    "selenium",
    "tests.browser",
    "tests.integration.helpers",
    "subprocess",
    "multiprocessing",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: list[ast.stmt], top: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every statement with whether it runs at import time (top=True at module level)."""
    for node in body:
        yield node, top
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _statements(node.body, False)
        elif isinstance(node, ast.If):
            runs = top and not _is_type_checking(node.test)
            yield from _statements(node.body, runs)
            yield from _statements(node.orelse, top)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if not isinstance(children, list):
                    continue
                for child in children:
                    if isinstance(child, (ast.ExceptHandler, ast.match_case)):
                        yield from _statements(child.body, top)
                    elif isinstance(child, ast.stmt):
                        yield from _statements([child], top)
                        # _statements yields the child itself; its own body is walked there


def imported_names(module: str, path: Path, top_only: bool) -> set[str]:
    """Dotted names a module imports: `import a.b` gives a.b; `from a import b` gives a.b
    and a (which is which is decided against the project's modules by the caller)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    seen: set[int] = set()
    for node, top in _statements(tree.body, True):
        if id(node) in seen or (top_only and not top):
            continue
        seen.add(id(node))
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


LAZY = ":lazy"  # a package's function-level imports: run when its attribute is read


def edges(top_only: bool) -> dict[str, set[str]]:
    """module -> project modules it imports (the deepest project module a name denotes, and
    the packages on the way, whose __init__ runs first; not the importer's own packages).

    A package's function-level imports (app/__init__'s lazy ``app`` attribute, what
    `faust -A app` reads) belong to a node of their own, ``<package>:lazy``, reached only by
    an import of a package attribute that is not a module (``from app import app``):
    importing ``app.main`` runs app/__init__'s body, not its ``__getattr__``."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}

    def resolve(names: set[str], own: set[str], module: str) -> set[str]:
        targets: set[str] = set()
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in modules:
                    targets.add(prefix)
            parent = name.rpartition(".")[0]
            if (
                not top_only
                and name not in modules
                and modules.get(parent, Path()).name == ("__init__.py")
            ):
                targets.add(parent + LAZY)
        return targets - own - {module}

    for module, path in modules.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        names = imported_names(module, path, top_only)
        if path.name == "__init__.py" and not top_only:
            top = imported_names(module, path, True)
            graph[module + LAZY] = resolve(names - top, own, module)
            names = top
        graph[module] = resolve(names, own, module)
    return graph


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_project_is_found() -> None:
    modules = project_modules()
    assert {"app", "app.main", "app.domain", "app.domain.codec", "agents.runtime"} <= set(modules)


def test_the_domain_imports_nothing_of_the_project_outside_it() -> None:
    graph = edges(top_only=True)
    violations = {
        (m, t)
        for m, ts in graph.items()
        if m == DOMAIN or m.startswith(DOMAIN + ".")
        for t in ts
        if t != DOMAIN and not t.startswith(DOMAIN + ".") and t not in ("app",)
    }  # the package app itself: its __init__ imports nothing
    assert violations - KNOWN_DOMAIN_VIOLATIONS == set(), "new: app.domain importing outside it"
    assert KNOWN_DOMAIN_VIOLATIONS - violations == set(), "fixed: remove from the known list"


def test_the_domain_imports_nothing_of_the_project_outside_it_even_in_functions() -> None:
    graph = edges(top_only=False)
    violations = {
        (m, t)
        for m, ts in graph.items()
        if m == DOMAIN or m.startswith(DOMAIN + ".")
        for t in ts
        if t != DOMAIN and not t.startswith(DOMAIN + ".") and t not in ("app",)
    }
    assert violations - KNOWN_DOMAIN_VIOLATIONS == set(), "new: app.domain importing outside it"


def test_no_import_cycle_at_module_level() -> None:
    found = cycles(edges(top_only=True))
    assert found - KNOWN_CYCLES == set(), "new module-level import cycle"
    assert KNOWN_CYCLES - found == set(), "cycle gone: remove it from KNOWN_CYCLES"


def test_function_level_imports_hide_no_new_cycle() -> None:
    found = cycles(edges(top_only=False))
    joined = {m for component in found for m in component}
    assert joined - KNOWN_HIDDEN_CYCLE_MODULES == set(), "new cycle through function imports"
    assert KNOWN_HIDDEN_CYCLE_MODULES - joined == set(), "gone: shrink the known list"
    assert len(found) <= 1, f"more than the known cycle: {sorted(found)}"


def test_a_packages_lazy_attribute_is_reached_only_through_that_attribute() -> None:
    graph = edges(top_only=False)
    assert {"agents.control", "agents.discovery", "agents.web_pages"} <= graph["app" + LAZY]
    assert "app" + LAZY not in graph["agents.worker"]  # it imports app.main, app.state
    assert "app" + LAZY not in set().union(*(graph[m] for m in graph if m.startswith("agents")))


def test_the_checker_sees_a_cycle_and_skips_function_level_imports(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == {("a", "b", "c")}
    source = tmp_path / "m.py"
    source.write_text(
        "import os\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import app.main\n"
        "try:\n    import app.web\nexcept ImportError:\n    pass\n"
        "class C:\n    import app.cluster_view\n"
        "def f():\n    import agents.runtime\n"
        "from . import sibling\n"
    )
    top = imported_names("app.x", source, top_only=True)
    assert {"os", "app.web", "app.cluster_view", "app", "app.sibling"} <= top
    assert "app.main" not in top and "agents.runtime" not in top
    every = imported_names("app.x", source, top_only=False)
    assert {"app.main", "agents.runtime"} <= every


def test_unit_tests_import_neither_the_faust_app_nor_a_browser_nor_start_processes() -> None:
    offenders = []
    for path in sorted((ROOT / "tests" / "unit").glob("*.py")):
        module = module_name(path)
        for name in imported_names(module, path, top_only=False):
            if any(name == f or name.startswith(f + ".") for f in UNIT_FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == [], "move these to tests/agents (Faust app) or tests/process"
