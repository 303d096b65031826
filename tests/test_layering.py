"""The library never imports click or the CLI (EXAMPLES.md practice 12).

The checks run in a fresh interpreter so that modules imported by other tests (the CLI
tests import click) cannot hide a leak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import guideopt

PACKAGE_DIR = Path(guideopt.__file__).resolve().parent


def _is_cli_module(path: Path) -> bool:
    """``cli.py`` and its companions (``cli_*.py``) are the click layer."""
    return path.parent == PACKAGE_DIR and (path.stem == "cli" or path.stem.startswith("cli_"))


def library_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if _is_cli_module(path) or path.name == "__main__.py":
            continue
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


# Imports groups of modules in turn (groups separated by "--") and prints, after each
# group, the click / guideopt.cli modules loaded so far.
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
    leaks.append(sorted(m for m in sys.modules if m == "click" or m.startswith("click.") or m.startswith("guideopt.cli")))
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
    assert "guideopt.cli" not in mods


def test_importing_guideopt_does_not_import_click(probe):
    assert probe[0] == []


def test_importing_every_library_module_does_not_import_click(probe):
    assert probe[1] == []


def test_probe_detects_click(probe):
    """The probe itself works: importing the CLI does pull in click."""
    assert "click" in probe[2] and "guideopt.cli" in probe[2]
