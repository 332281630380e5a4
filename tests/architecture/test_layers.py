"""The house rules, checked: no import cycles, a runner that names no guard, no pointer
outside the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

import sandbox_platform
from sandbox_platform.guards import builtin

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(sandbox_platform.__file__).parent


def strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's algorithm over the package's import graph (imports inside functions count)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            groups.append(group)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycles_in_the_package() -> None:
    graph = grimp.build_graph("sandbox_platform", include_external_packages=False)
    assert "sandbox_platform.guards.pipeline" in graph.modules
    cycles = [sorted(group) for group in strongly_connected(graph) if len(group) > 1]
    assert cycles == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    assert [g for g in strongly_connected(graph) if len(g) > 1] == [{"pkg.a", "pkg.b"}]


def test_the_layer_contract_holds() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_runner_names_no_guard() -> None:
    source = (PACKAGE / "guards" / "pipeline.py").read_text()
    assert "builtin" not in source  # it does not import them
    for guard in builtin.BUILTIN_GUARDS:
        assert type(guard).__name__ not in source
        assert type(guard).__module__.rsplit(".", 1)[-1] + " import" not in source


def test_nothing_points_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if (
            path.suffix not in (".py", ".md", ".toml", ".yml", ".yaml", ".txt", "")
            or not path.is_file()
        ):
            continue
        text = path.read_text(errors="replace")
        for needle in (
            "DESIGN" + ".md",
            "../" + "shared",
            "/work/" + "shared",
            "BATCH_1" + "_README",
        ):
            if needle in text:
                offenders.append(f"{name}: {needle}")
    assert offenders == []
