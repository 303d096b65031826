"""Prediction accuracy against measurements: before/after calibration and leave-one-GPU-out.

``validate.py`` maps measured rows onto predictable cases and aggregates errors; this
module chooses which calibration predicts them:

* ``prior``: the hand-written generic efficiencies of ``catalogs/calibration-prior.yaml``
  (what a plain roofline with round efficiency guesses gives);
* ``fitted``: ``catalogs/calibration.yaml`` from ``scripts/fit_calibration.py``;
* leave-one-GPU-out: for each GPU with its own fitted device entry, that entry is removed
  and the GPU falls back to the median of the other measured GPUs of its family (or of all
  others), exactly as an unmeasured GPU would; only that GPU's rows are then scored.
  Engine parameters stay as fitted (they are shared by all GPUs).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from pathlib import Path

from guideopt.calibration.validate import Case, Report, Skip, cases_from_file, validate
from guideopt.catalog import Catalog, catalog_dir, load_catalog
from guideopt.errors import CatalogError
from guideopt.model.calibration import Calibration, DeviceEfficiency

PRIOR_FILE = "calibration-prior.yaml"
DEVICE_FIELDS = ("compute_eff", "mem_eff", "attn_compute_eff", "attn_mem_eff", "kernel_overhead_us")


def prior_calibration() -> Calibration:
    import yaml

    path = catalog_dir() / PRIOR_FILE
    try:
        return Calibration.model_validate(yaml.safe_load(path.read_text()))
    except FileNotFoundError:
        raise CatalogError(f"{path} is missing") from None


def with_calibration(catalog: Catalog, calibration: Calibration) -> Catalog:
    return dataclasses.replace(catalog, calibration=calibration)


def _predictor(catalog: Catalog) -> Callable[[dict], object]:
    from guideopt.api import predict

    return lambda request: predict(request, catalog)


def validate_with(path: str | Path, calibration: str = "fitted", catalog: Catalog | None = None) -> Report:
    cat = catalog or load_catalog()
    if calibration == "prior":
        cat = with_calibration(cat, prior_calibration())
    return validate(cases_from_file(path, cat), _predictor(cat))


def _median_of(members: list[DeviceEfficiency], note: str) -> DeviceEfficiency:
    values = {f: round(statistics.median(getattr(m, f) for m in members), 4) for f in DEVICE_FIELDS}
    return DeviceEfficiency(**values, fitted_from=note)


def without_gpu(cal: Calibration, catalog: Catalog, gpu_id: str) -> Calibration:
    """The calibration an unmeasured ``gpu_id`` would get: family or global median of the others."""
    others = {g: e for g, e in cal.gpus.items() if g != gpu_id}
    arch = catalog.gpus[gpu_id].arch
    family = [e for g, e in others.items() if catalog.gpus[g].arch == arch]
    arch_map = {k: v for k, v in cal.arch.items() if k != arch}
    if family:
        arch_map[arch] = _median_of(family, f"leave-one-out median of {arch} without {gpu_id}")
    default = _median_of(list(others.values()), f"leave-one-out median without {gpu_id}")
    return cal.model_copy(update={"gpus": others, "arch": arch_map, "default_device": default})


def leave_one_gpu_out(path: str | Path, catalog: Catalog | None = None) -> Report:
    """Score every fitted GPU's rows with that GPU's own device fit left out."""
    cat = catalog or load_catalog()
    cases = cases_from_file(path, cat)
    merged = Report()
    for gpu_id in sorted(cat.calibration.gpus):
        held = with_calibration(cat, without_gpu(cat.calibration, cat, gpu_id))
        mine = [c for c in cases if isinstance(c, Case) and c.request.get("gpu") == gpu_id]
        part = validate(mine, _predictor(held))
        merged.results.extend(part.results)
        merged.skipped.extend(part.skipped)
        merged.distinct_configs += part.distinct_configs
        merged.seconds += part.seconds
    merged.skipped.extend(c for c in cases if isinstance(c, Skip))
    return merged
