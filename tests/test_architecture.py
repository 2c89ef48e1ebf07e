"""The house rules, checked from the code itself: no import cycle, Ray and MLflow only where they belong,
no module over 600 lines, and no citation of a design file outside the repository."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flosssweep"
# Where each third-party framework may be imported (module-name prefixes).
ALLOWED = {
    "ray": ("flosssweep.sweep",),
    "mlflow": ("flosssweep.tracking", "flosssweep.report.sources"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (lazy imports count too)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of nodes, or None; a package importing its own submodules
    (its face) is not a cycle unless a submodule imports the package back for something."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    # a package's __init__ re-exporting its submodules is its face: leave those edges out
    faces = {
        name: {m for m in deps if not m.startswith(name + ".")} if MODULES[name].name == "__init__.py" else deps
        for name, deps in GRAPH.items()
    }
    assert find_cycle(faces) is None


@pytest.mark.parametrize("framework", sorted(ALLOWED))
def test_frameworks_are_imported_only_where_they_belong(framework):
    offenders = [
        name
        for name, path in MODULES.items()
        if any(m == framework or m.startswith(framework + ".") for m in imports(path))
        and not name.startswith(ALLOWED[framework])
    ]
    assert not offenders, f"{framework} imported outside {ALLOWED[framework]}: {offenders}"


def test_training_and_numerics_import_neither_sweep_tracking_nor_report():
    lower = [
        n
        for n in MODULES
        if n.startswith(("flosssweep.train", "flosssweep.models", "flosssweep.chaos"))
        or n
        in (
            "flosssweep.config",
            "flosssweep.lyapunov",
            "flosssweep.floss",
            "flosssweep.optim",
            "flosssweep.tasks",
            "flosssweep.records",
            "flosssweep.names",
            "flosssweep.threshold",
        )
    ]
    upper = ("flosssweep.sweep", "flosssweep.tracking", "flosssweep.report", "flosssweep.bench")
    for name in lower:
        assert not [m for m in GRAPH[name] if m.startswith(upper)], name


def test_the_threshold_posterior_needs_no_framework():
    # the sweep's searcher and the report's fit both import it, so it must not pull in torch, Ray or MLflow
    heavy = ("torch", "ray", "mlflow", "flosssweep.")
    assert not [m for m in imports(MODULES["flosssweep.threshold"]) if m.startswith(heavy)]


def test_no_module_over_600_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 600}
    assert not long


def tracked_files() -> list[Path]:
    """The checkout's own files: walked without descending into virtual environments, caches or .git
    (a walk of .venv alone reads tens of thousands of entries)."""
    skip = {".venv", ".git", "__pycache__", ".pytest_cache", "node_modules"}
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        found += [Path(folder, f) for f in files]
    return found


def test_nothing_cites_a_design_file_outside_the_repository():
    texts = [
        p
        for p in tracked_files()
        if p.suffix in (".py", ".md", ".yaml", ".toml") and ".venv" not in p.parts and p != Path(__file__)
    ]
    citing = [
        str(p.relative_to(ROOT))
        for p in texts
        if "shared/DESIGN" in (text := p.read_text(errors="ignore")) or "DESIGN " in text.replace("DESIGN.md", "")
    ]
    assert not citing


def sqlite_literals(path: Path) -> list[int]:
    """Lines of a module with a string literal or f-string that starts with a SQLite URI's scheme."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.JoinedStr) and node.values:
            node = node.values[0]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("sqlite:"):
            found.append(node.lineno)
    return found


def test_only_the_uri_module_spells_a_sqlite_uri():
    parser = MODULES["flosssweep.tracking.uris"]
    assert sqlite_literals(parser), "the parser itself must be found, or this test finds nothing"
    spelled = {name: lines for name, path in MODULES.items() if path != parser and (lines := sqlite_literals(path))}
    assert not spelled, f"sqlite:/// handled outside tracking/uris.py: {spelled}"
