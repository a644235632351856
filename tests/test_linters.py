"""ruff (with its function-size checks), mypy (strict) and the shape of observer's imports
(no circles, no re-exports, features apart) are part of the test suite."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_finds_nothing() -> None:
    result = run_tool("ruff", "check", "observer", "tests", "bench", "packaging")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


# -- imports: no circles, no re-exports, features apart ---------------------------------

PACKAGE = ROOT / "observer"


def module_name(path: Path) -> str:
    """``observer/alerts/state.py`` as ``observer.alerts.state`` (a package as itself)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def observer_modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}


def imported_names(module: str, tree: ast.Module) -> Iterator[tuple[str, ast.alias]]:
    """Every name an import anywhere in ``tree`` (at the top or in a function) brings in,
    absolute: ``from observer.alerts import state`` gives ``observer.alerts.state``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, alias
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # observer's imports are absolute; a relative one, from a module
                here = module.split(".")[: -node.level]
                base = ".".join([*here, base] if base else here)
            for alias in node.names:
                yield f"{base}.{alias.name}", alias


def import_graph() -> dict[str, set[str]]:
    """Which of observer's modules each of them imports (``from a import b``: ``a.b`` if
    it is a module, else ``a``)."""
    trees = observer_modules()
    graph: dict[str, set[str]] = {name: set() for name in trees}
    for name, tree in trees.items():
        for imported, _alias in imported_names(name, tree):
            target = imported if imported in trees else imported.rpartition(".")[0]
            if target in trees and target != name:
                graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            components.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_import_graph_sees_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["d"]]


def test_no_module_of_observer_imports_itself_through_others() -> None:
    circles = [c for c in strongly_connected(import_graph()) if len(c) > 1]
    assert circles == [], f"import circles (module-level or in functions): {circles}"


def test_no_module_re_exports_a_name_it_imports() -> None:
    """``from a import X as X`` hides where X lives: its users import it from ``a``."""
    found = [
        f"{module}: {imported}"
        for module, tree in observer_modules().items()
        for imported, alias in imported_names(module, tree)
        if alias.asname is not None and alias.asname == alias.name.rpartition(".")[2]
    ]
    assert found == []


FEATURES = ("alerts", "metrics", "dashboard", "run", "jobs", "fleet", "shell", "doctor")
# Where services and commands are wired together: they may import every feature.
WIRING = ("observer.daemon", "observer.__main__")
# The only imports from one feature into another, each a concept with one owner that the
# other uses as it is (keep this list short: a new edge is a shared thing for the core).
ALLOWED_FEATURE_EDGES = {
    ("alerts", "observer.metrics.job_metrics"): (
        "metric checks read a run's $JOB_METRICS_FILE with the exporter's parser and "
        "directory rule (one reading of that file)"
    ),
    ("jobs", "observer.metrics.dropin"): (
        "a job with metrics gets the drop-in's $JOB_METRICS_FILE settings, and `observer "
        "jobs` asks systemd with its D-Bus calls"
    ),
    ("jobs", "observer.run.schedule"): (
        "a job's cron schedule has the syntax of `observer run --schedule` (its nicknames)"
    ),
    ("doctor", "observer.run.spool"): (
        "the doctor looks for runs set aside in the spool where `observer run` keeps it "
        "(one rule for where that is)"
    ),
}


def feature_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FEATURES else None


def feature_imports() -> set[tuple[str, str, str]]:
    """(importing module, its feature or "core", imported module of another feature)."""
    found = set()
    for module, targets in import_graph().items():
        if module.startswith(WIRING):
            continue
        for target in targets:
            owner, used = feature_of(module), feature_of(target)
            if used is not None and used != owner:
                found.add((module, owner or "core", target))
    return found


def test_the_core_imports_no_feature() -> None:
    assert sorted(m for m, owner, _t in feature_imports() if owner == "core") == []


def test_a_feature_imports_another_only_through_an_allowed_edge() -> None:
    unexplained = sorted(
        f"{module} -> {target}"
        for module, owner, target in feature_imports()
        if owner != "core" and (owner, target) not in ALLOWED_FEATURE_EDGES
    )
    assert unexplained == []


def test_every_allowed_edge_between_features_is_still_used() -> None:
    used = {(owner, target) for _m, owner, target in feature_imports()}
    assert sorted(set(ALLOWED_FEATURE_EDGES) - used) == []
