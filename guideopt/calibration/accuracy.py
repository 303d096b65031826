"""Prediction accuracy against measurements: all data, leave one source out, leave one GPU family out.

``validate.py`` maps measured rows onto cases and aggregates errors; this module chooses
which calibration predicts each row:

* ``prior``: the hand-written generic efficiencies of ``catalogs/calibration-prior.yaml``;
* ``fitted``: ``catalogs/calibration.yaml`` from ``scripts/fit_calibration.py``;
* leave one source out: each source's rows predicted with the engine terms re-fitted
  without that source (device and link terms come from kernel rows, never from e2e rows);
* leave one GPU family out: each family's rows predicted with its GPUs' device entries
  removed (they fall back to the median of the other families) and the engine terms
  re-fitted without that family's rows (a vendor-specific engine entry is dropped when
  its vendor's only family is held out).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from guideopt.calibration.fit_devices import median_device
from guideopt.calibration.fit_engines import Linearised, efficiency, engine_key, fit_engine
from guideopt.calibration.mapping import Case, Skip, cases_from_file
from guideopt.calibration.results import Report
from guideopt.calibration.validate import validate
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
    return validate(cases_from_file(path, cat, family="dense"), _predictor(cat))


def _median_of(members: list[DeviceEfficiency], note: str) -> DeviceEfficiency:
    return median_device(members, note)


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


def without_family(cal: Calibration, catalog: Catalog, arch: str) -> Calibration:
    others = {g: e for g, e in cal.gpus.items() if catalog.gpus[g].arch != arch}
    arch_map = {k: v for k, v in cal.arch.items() if k != arch}
    default = _median_of(list(others.values()), f"median of the other families (without {arch})")
    return cal.model_copy(update={"gpus": others, "arch": arch_map, "default_device": default})


def _merge(parts: list[Report], skipped: list[Skip]) -> Report:
    merged = Report()
    for part in parts:
        merged.results.extend(part.results)
        merged.skipped.extend(part.skipped)
        merged.distinct_configs += part.distinct_configs
        merged.seconds += part.seconds
    merged.skipped.extend(skipped)
    return merged


def leave_one_gpu_out(path: str | Path, catalog: Catalog | None = None) -> Report:
    """Score every fitted GPU's rows with that GPU's own device fit left out."""
    cat = catalog or load_catalog()
    cases = cases_from_file(path, cat, family="dense")
    parts = []
    for gpu_id in sorted(cat.calibration.gpus):
        held = with_calibration(cat, without_gpu(cat.calibration, cat, gpu_id))
        parts.append(validate([c for c in cases if isinstance(c, Case) and c.request.get("gpu") == gpu_id], _predictor(held)))
    return _merge(parts, [c for c in cases if isinstance(c, Skip)])


def _vendor(cat: Catalog) -> Callable[[str], str]:
    return lambda gpu: cat.gpus[gpu].vendor.value


def linearisations(cat: Catalog, cases: list[Case]) -> dict[str, Linearised]:
    """One linearisation of every fitted engine key around the shipped calibration."""
    by_key: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        by_key[engine_key(c, _vendor(cat))].append(c)
    out = {}
    for key, mine in by_key.items():
        if key not in cat.calibration.frameworks:
            continue
        # One linearisation around the shipped fit: held-out refits only re-solve it.
        fitted = fit_engine(cat, cat.calibration, key, mine, prior_calibration(), rounds=1)
        if fitted is not None:
            out[key] = fitted[1]
    return out


def _refit(cal: Calibration, lins: dict[str, Linearised], held_out: Callable[[Case], bool]) -> Calibration:
    frameworks = dict(cal.frameworks)
    for key, lin in lins.items():
        keep = [not held_out(c) for c in lin.cases]
        if all(keep):
            continue
        if sum(keep) < 5 and "@" in key:
            frameworks.pop(key, None)  # its only data held out: the engine's generic entry stands in
            continue
        import numpy as np

        frameworks[key] = efficiency(lin.solve(np.array(keep)), cal.frameworks[key], f"refit without held-out rows ({sum(keep)} kept)")
    return cal.model_copy(update={"frameworks": frameworks})


def _member_of(group: Callable[[Case], str], name: str) -> Callable[[Case], bool]:
    return lambda c: group(c) == name


def leave_one_out(
    path: str | Path,
    group: Callable[[Case], str],
    held_calibration: Callable[[Calibration, str], Calibration] | None = None,
    catalog: Catalog | None = None,
) -> Report:
    """Score each group's rows with the engine terms refitted without that group
    (and the device terms transformed by ``held_calibration``, if given)."""
    cat = catalog or load_catalog()
    items = cases_from_file(path, cat, family="dense")
    cases = [c for c in items if isinstance(c, Case)]
    lins = linearisations(cat, cases)
    groups: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        groups[group(c)].append(c)
    parts = []
    for name, mine in sorted(groups.items()):
        cal = _refit(cat.calibration, lins, _member_of(group, name))
        if held_calibration is not None:
            cal = held_calibration(cal, name)
        parts.append(validate(mine, _predictor(with_calibration(cat, cal))))
    return _merge(parts, [c for c in items if isinstance(c, Skip)])


def leave_one_source_out(path: str | Path, catalog: Catalog | None = None) -> Report:
    return leave_one_out(path, lambda c: c.source, catalog=catalog)


def leave_one_family_out(path: str | Path, catalog: Catalog | None = None) -> Report:
    cat = catalog or load_catalog()
    return leave_one_out(path, lambda c: cat.gpus[c.request["gpu"]].arch, lambda cal, arch: without_family(cal, cat, arch), catalog=cat)


__all__ = [
    "DEVICE_FIELDS",
    "leave_one_family_out",
    "leave_one_gpu_out",
    "leave_one_source_out",
    "prior_calibration",
    "statistics",
    "validate_with",
    "with_calibration",
]
