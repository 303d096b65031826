"""Edit ``catalogs/calibration.yaml`` in place from a fitting script: its comment header kept,
its keys in their order, one block or term changed by ``edit``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def edit_calibration_file(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Load ``path``, let ``edit`` change the mapping in place, write it back under the same header."""
    text = path.read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    data = yaml.safe_load(text)
    edit(data)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=200))
