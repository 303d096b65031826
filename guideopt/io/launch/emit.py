"""Write a plan's launch outputs: one script and one Kubernetes manifest per group, and PLAN.md."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guideopt.catalog import Catalog, load_catalog
from guideopt.errors import InvalidRequestError
from guideopt.io.launch.kubernetes import render_manifests
from guideopt.io.launch.layout import plan_launches
from guideopt.io.launch.planmd import PLAN_FILE, plan_markdown
from guideopt.io.launch.script import render_script
from guideopt.model.plan import PlanResult
from guideopt.model.request import PlanRequest
from guideopt.model.validation import validated

SCRIPT_MODE = 0o755  # rwx for the owner, r-x for the rest
# What emit writes per group (layout.py: script_name, manifest_name); an earlier plan's
# files of these names are removed first, or they would be taken for this plan's.
EMITTED_GLOBS = ("launch-*.sh", "k8s-*.yaml")


def _as_request(request: PlanRequest | Mapping[str, Any] | None) -> PlanRequest | None:
    if request is None or isinstance(request, PlanRequest):
        return request
    return validated(PlanRequest, request)


def _remove_stale(out: Path, names: set[str]) -> None:
    for pattern in EMITTED_GLOBS:
        for stale in sorted(out.glob(pattern)):
            if stale.name not in names and stale.is_file():
                stale.unlink()


def _write(path: Path, text: str, executable: bool = False) -> Path:
    path.write_text(text)
    if executable:
        os.chmod(path, SCRIPT_MODE)
    return path


def emit(
    result: PlanResult,
    directory: str | os.PathLike[str],
    *,
    request: PlanRequest | Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> list[Path]:
    """Write one executable launch script and one Kubernetes manifest per plan group, and a
    PLAN.md, into ``directory``. Returns the written paths (scripts, manifests, PLAN.md)."""
    if not result.plans:
        raise InvalidRequestError("emit: the plan result has no plans to write (solve a feasible request first)")
    cat = catalog or load_catalog()
    req = _as_request(request)
    out = Path(directory)
    if not out.parent.is_dir():  # create the folder, never a tree of them (a typo would build one at /)
        raise InvalidRequestError(f"emit: the folder {out.parent} does not exist (create it first, or give another --emit folder)")
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise InvalidRequestError(f"emit: cannot create directory {out} ({exc.strerror or exc})") from None
    launches = [plan_launches(plan, request=req, catalog=cat) for plan in result.plans]
    groups = [launch for plan_launches_ in launches for launch in plan_launches_]
    _remove_stale(out, {name for launch in groups for name in (launch.script_name, launch.manifest_name)})
    paths = [_write(out / launch.script_name, render_script(launch), executable=True) for launch in groups]
    paths += [_write(out / launch.manifest_name, render_manifests(launch, cat)) for launch in groups]
    paths.append(_write(out / PLAN_FILE, plan_markdown(result, launches, req)))
    return paths
