"""The package's layers, enforced: an allowed-imports matrix, no import cycle, and the
library never imports click or the CLI (EXAMPLES.md practice 12).

Data flows catalog → model → costs → solver → analyses → api → io / calibration →
commands / web → cli. Each top-level part may import only the parts listed for it in
``ALLOWED`` (itself included); every import counts, also one inside a function.
The click check runs in a fresh interpreter so that modules imported by other tests (the
CLI tests import click) cannot hide a leak.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import guideopt

PACKAGE_DIR = Path(guideopt.__file__).resolve().parent

BASE = {"units", "errors"}
ALLOWED: dict[str, set[str]] = {
    "units": set(),
    "errors": set(),
    "model": BASE | {"model"},
    "catalog": BASE | {"model"},
    "costs": BASE | {"model", "costs"},
    "simulator": BASE | {"model", "costs", "simulator"},
    "solver": BASE | {"model", "catalog", "costs", "simulator", "solver"},
    "analyses": BASE | {"model", "catalog", "costs", "simulator", "solver", "analyses"},
    "api": BASE | {"model", "catalog", "costs", "simulator", "solver", "analyses"},
    "io": BASE | {"model", "catalog", "costs", "simulator", "solver", "analyses", "api", "io"},
    "calibration": BASE | {"model", "catalog", "costs", "simulator", "analyses", "api", "io", "calibration"},
    "web": BASE | {"model", "catalog", "simulator", "analyses", "api", "io", "web"},
    "commands": BASE | {"model", "catalog", "simulator", "analyses", "api", "io", "calibration", "web", "commands"},
    "cli": {"commands"},
    "__init__": {"api", "errors"},
}
CLI_PARTS = {"cli", "commands"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """Top-level part of a guideopt module: ``guideopt.solver.cpsat`` -> ``solver``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def guideopt_imports(path: Path) -> set[str]:
    """Every guideopt module ``path`` imports (at any depth in the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("guideopt"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("guideopt"):
            for alias in node.names:  # `from guideopt.solver import cpsat` imports a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _is_module(sub) else node.module)
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE_DIR / rel).with_suffix(".py").exists() or (PACKAGE_DIR / rel / "__init__.py").exists()


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): guideopt_imports(p) for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def test_every_part_is_in_the_matrix():
    parts = {part_of(m) for m in import_graph()}
    assert parts <= set(ALLOWED), f"add {sorted(parts - set(ALLOWED))} to ALLOWED"


def test_imports_follow_the_matrix():
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in import_graph().items()
        for dep in sorted(deps)
        if part_of(dep) != "__init__" and part_of(dep) not in ALLOWED[part_of(mod)]
    ]
    bad += [f"{mod} imports the package root" for mod, deps in import_graph().items() if "guideopt" in deps and part_of(mod) != "__init__"]
    assert bad == []


def test_the_matrix_itself_has_no_cycle():
    """Two parts that may import each other would allow a cycle between layers."""
    pairs = [(a, b) for a, deps in ALLOWED.items() for b in deps if a != b and a in ALLOWED.get(b, set())]
    assert pairs == []


def test_no_import_cycle_between_modules():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack + [node, dep]
            if dep in graph and state.get(dep) is None:
                cycle = visit(dep, stack + [node])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for mod in sorted(graph):
        if state.get(mod) is None:
            cycle = visit(mod, [])
            assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_a_violation(tmp_path):
    """The matrix check is not vacuous: a costs module importing the catalog is caught."""
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from guideopt.catalog import load_catalog\n")
    deps = guideopt_imports(bad)
    assert "guideopt.catalog" in deps and part_of("guideopt.catalog") not in ALLOWED["costs"]


def library_modules() -> list[str]:
    return [m for m in import_graph() if part_of(m) not in CLI_PARTS]


# Imports groups of modules in turn (groups separated by "--") and prints, after each
# group, the click / guideopt CLI modules loaded so far.
PROBE = """
import importlib, json, sys
groups, current = [], []
for arg in sys.argv[1:] + ["--"]:
    if arg == "--":
        groups.append(current)
        current = []
    else:
        current.append(arg)
leaks = []
for group in groups:
    for name in group:
        importlib.import_module(name)
    leaks.append(sorted(m for m in sys.modules if m == "click" or m.startswith("click.") or m.startswith("guideopt.cli")
                        or m.startswith("guideopt.commands")))
print(json.dumps(leaks))
"""


@pytest.fixture(scope="module")
def probe() -> list[list[str]]:
    """One interpreter: ``guideopt`` alone, then every library module, then the CLI."""
    args = ["guideopt", "--", *library_modules(), "--", "guideopt.cli"]
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_library_modules_are_found():
    mods = library_modules()
    for expected in ("guideopt", "guideopt.api", "guideopt.solver.cpsat", "guideopt.costs.roofline", "guideopt.model.llm"):
        assert expected in mods
    assert "guideopt.cli" not in mods and "guideopt.commands.plan" not in mods


def test_importing_guideopt_does_not_import_click(probe):
    assert probe[0] == []


def test_importing_every_library_module_does_not_import_click(probe):
    assert probe[1] == []


def test_probe_detects_click(probe):
    """The probe itself works: importing the CLI does pull in click."""
    assert "click" in probe[2] and "guideopt.cli" in probe[2]


# ---------------------------------------------------------------- file size

MAX_LINES = 400  # the project brief: small functions, no file over 400 lines


def line_counts() -> dict[str, int]:
    return {p.relative_to(PACKAGE_DIR).as_posix(): len(p.read_text().splitlines()) for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def test_line_counts_see_the_package():
    counts = line_counts()
    assert counts["solver/plan.py"] > 0 and len(counts) > 50


def test_no_package_file_is_over_the_line_limit():
    over = {name: n for name, n in line_counts().items() if n > MAX_LINES}
    assert over == {}, f"split these files (at most {MAX_LINES} lines each)"
