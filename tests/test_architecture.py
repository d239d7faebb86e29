"""The import graph of filters/, shards/, fada/ and flows/ keeps the layering of DESIGN.md §1 and docs/architecture.md.

Every module is parsed with `ast` (nothing is imported), and every import counts: module-level ones and those
inside functions (a lazy import is still a dependency). Checked:
* layers point one way: filters/ imports none of shards/, fada/, flows/; shards/ none of fada/, flows/;
  fada/ not flows/;
* no import cycles between modules, inside a package or across packages;
* the package arrows in docs/architecture.md's ``imports`` block are exactly the package-level graph of the code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("filters", "shards", "fada", "flows")  # bottom layer first: a package may import only those before it
ARCHITECTURE_DOC = REPO / "docs" / "architecture.md"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def collect_modules(root: Path = REPO) -> dict[str, Path]:
    return {module_name(path, root): path for package in PACKAGES for path in sorted((root / package).rglob("*.py"))}


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that ``name`` imports anywhere in its source (``from pkg import mod`` counts as ``pkg.mod``).

    A module importing itself by name (``from flows import cli`` inside flows/cli.py, for ``python -m``) is not a
    dependency and is left out."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import fada.metrics.fvd.x` → the longest known prefix
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    modules = collect_modules(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def package_of(module: str) -> str:
    return module.split(".", 1)[0]


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    rank = {package: i for i, package in enumerate(PACKAGES)}
    return sorted((a, b) for a, targets in graph.items() for b in targets if rank[package_of(b)] > rank[package_of(a)])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted: every import cycle
    lies inside one of them."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node: str) -> None:  # recursion depth ≤ number of modules (< 200)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def package_arrows(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(package_of(a), package_of(b)) for a, targets in graph.items() for b in targets if package_of(a) != package_of(b)}


def documented_arrows(text: str) -> set[tuple[str, str]]:
    """The ``A -> B`` lines (A imports B) of the first fenced block tagged ``imports``."""
    block = re.search(r"^```imports\n(.*?)^```", text, re.S | re.M)
    if block is None:
        raise ValueError("no ```imports fenced block")
    arrows = set()
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            importer, arrow, imported = line.partition("->")
            if not arrow or not importer.strip() or not imported.strip():
                raise ValueError(f"not an 'A -> B' arrow: {line!r}")
            arrows.add((importer.strip(), imported.strip()))
    return arrows


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_package_module_is_parsed(graph):
    assert {package_of(name) for name in graph} == set(PACKAGES)
    assert "filters.media_contract" in graph and "filters.media_contract" in graph["filters.extract"]


def test_layers_point_one_way(graph):
    assert upward_imports(graph) == [], "filters/ < shards/ < fada/ < flows/: a package imports only those below it"


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_documented_package_arrows_match_the_code(graph):
    assert documented_arrows(ARCHITECTURE_DOC.read_text()) == package_arrows(graph)


def test_checks_catch_new_violations(tmp_path):
    """A planted upward import, a planted cycle (one of them a lazy import) and a missing doc arrow are found."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "filters" / "a.py").write_text("from filters import b\n")
    (tmp_path / "filters" / "b.py").write_text("def f():\n    from filters.a import g\n")
    (tmp_path / "shards" / "c.py").write_text("import filters.a\n\ndef h():\n    from fada.d import x\n")
    (tmp_path / "fada" / "d.py").write_text("from . import e\n")
    (tmp_path / "fada" / "e.py").write_text("from shards import c\n")
    planted = import_graph(tmp_path)
    assert planted["filters.a"] == {"filters.b"} and planted["fada.d"] == {"fada.e"}
    assert upward_imports(planted) == [("shards.c", "fada.d")]
    assert cycles(planted) == [["fada.d", "fada.e", "shards.c"], ["filters.a", "filters.b"]]
    assert package_arrows(planted) == {("shards", "filters"), ("shards", "fada"), ("fada", "shards")}
    doc = "text\n```imports\nshards -> filters  # storage uses media\nfada -> shards\n```\n"
    assert documented_arrows(doc) == {("shards", "filters"), ("fada", "shards")} != package_arrows(planted)
    with pytest.raises(ValueError, match="arrow"):
        documented_arrows("```imports\nshards <- filters\n```\n")
