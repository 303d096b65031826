"""Write a plan's launch outputs: one script and one Kubernetes manifest per group, and PLAN.md.

A disaggregated plan gets one script per pool (its group), a router script and, in place of the
groups' manifests, one Dynamo DynamoGraphDeployment (dynamo.py) that starts both pools and the router."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guideopt.catalog import Catalog, load_catalog
from guideopt.errors import InvalidRequestError
from guideopt.io.launch.dynamo import manifest_name, render_dgd
from guideopt.io.launch.kubernetes import render_manifests
from guideopt.io.launch.layout import GroupLaunch, plan_launches
from guideopt.io.launch.planmd import PLAN_FILE, plan_markdown
from guideopt.io.launch.roles import is_disaggregated, pools
from guideopt.io.launch.router import render_router, router_name
from guideopt.io.launch.script import render_script
from guideopt.model.plan import Plan, PlanResult
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


def _plan_files(plan: Plan, launches: list[GroupLaunch], cat: Catalog) -> dict[str, tuple[str, bool]]:
    """name -> (text, executable) of one plan's scripts and manifests."""
    files = {launch.script_name: (render_script(launch), True) for launch in launches}
    if not is_disaggregated(plan):
        return files | {launch.manifest_name: (render_manifests(launch, cat), False) for launch in launches}
    p, d = pools(plan)
    prefill, decode = launches[p], launches[d]
    files[router_name(plan, prefill.group.framework)] = (render_router(plan, launches, prefill, decode), True)
    files[manifest_name(plan, prefill.group.framework)] = (render_dgd(plan, prefill, decode, cat), False)
    return files


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
    files: dict[str, tuple[str, bool]] = {}
    for plan, plan_launches_ in zip(result.plans, launches):
        files |= _plan_files(plan, plan_launches_, cat)
    _remove_stale(out, set(files))
    scripts = [name for name, (_, executable) in files.items() if executable]  # scripts first, then manifests
    paths = [_write(out / name, files[name][0], executable=True) for name in scripts]
    paths += [_write(out / name, text) for name, (text, executable) in files.items() if not executable]
    paths.append(_write(out / PLAN_FILE, plan_markdown(result, launches, req)))
    return paths
