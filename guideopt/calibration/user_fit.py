"""Fit the engine terms to a user's own measurements (``guideopt calibrate``) and say what the fit used.

Per engine key the fit is the shipped one (``fit_engines.fit_engine``: started from and
pulled weakly toward the shipped terms), on the user's cases only. What it leaves out is
said, one note per engine key: closed-loop TTFTs (they also measure the benchmark clients'
lockstep: they fit only the server's path to the first token, ``fit_first_token``, after the
step terms), configurations beyond the fit's bound (taken evenly),
and keys with too few rows. The overlay names the user's files (base name and sha256) in
``fitted_on``, the shipped calibration only as the ``prior``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from guideopt.calibration.cases import Case
from guideopt.calibration.fit_engines import MAX_CONFIGS_PER_ENGINE, MIN_CASES, ROUNDS, STEPS, engine_key, fit_engine, usable_for_fit
from guideopt.calibration.fit_first_token import TERM, fit_user_first_token
from guideopt.calibration.overlay import CalibrationOverlay, FittedFile
from guideopt.calibration.user_data import UserFile
from guideopt.catalog import Catalog

# Called as progress(what, done, total) after each prediction pass of the fit.
Progress = Callable[[str, int, int], None]
PASSES_PER_KEY = ROUNDS * (1 + len(STEPS))
PRIOR_NOTE = (
    "the shipped calibration (catalogs/calibration.yaml, fitted on shared/data/measured/e2e.csv): each engine's terms start "
    "from it and are pulled weakly toward it; every term and engine not listed here stays as shipped"
)


@dataclass
class UserFit:
    overlay: CalibrationOverlay
    notes: list[str] = field(default_factory=list)  # one line per engine key: what the fit used and left out


def describe(cases: list[Case]) -> str:
    """``fitted_from`` of a user fit: the user's files and their lines."""
    lines: dict[str, set[int]] = defaultdict(set)
    for c in cases:
        lines[Path(c.source).name].add(c.line)
    files = ", ".join(f"{name} lines {min(ls)}-{max(ls)}" if len(ls) > 1 else f"{name} line {min(ls)}" for name, ls in lines.items())
    return f"your measurements: {files} ({len(cases)} rows, {len({c.config_key for c in cases})} configurations)"


def _left_out(key: str, cases: list[Case]) -> list[str]:
    notes = []
    lockstep = sum(not usable_for_fit(c) for c in cases)
    if lockstep:
        notes.append(
            f"{key}: {lockstep} closed-loop TTFT rows fit only the server's path to the first token ({TERM}), not the step terms "
            "(they also measure the clients' lockstep)"
        )
    configs = len({c.config_key for c in cases if usable_for_fit(c)})
    if configs > MAX_CONFIGS_PER_ENGINE:
        notes.append(
            f"{key}: fitted on {MAX_CONFIGS_PER_ENGINE} of its {configs} configurations, taken evenly (the fit's bound per engine)"
        )
    return notes


def fit_user_overlay(catalog: Catalog, cases: list[Case], files: list[UserFile], progress: Progress | None = None) -> UserFit:
    by_key: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        if c.request.get("gpu") in catalog.gpus and c.request.get("framework") in catalog.frameworks:
            by_key[engine_key(c, lambda g: catalog.gpus[g].vendor.value)].append(c)
    total, done = PASSES_PER_KEY * len(by_key), 0
    fit = UserFit(CalibrationOverlay(prior=PRIOR_NOTE))
    used: Counter[str] = Counter()

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(f"fitting {key}", done, total)

    for key, mine in sorted(by_key.items()):
        start = done
        fit.notes += _left_out(key, mine)
        result = fit_engine(catalog, catalog.calibration, key, mine, catalog.calibration, describe=describe, tick=tick)
        done = start + PASSES_PER_KEY
        if result is None:
            usable = sum(usable_for_fit(c) for c in mine)
            fit.notes.append(f"{key}: not fitted: {usable} rows to fit, fewer than {MIN_CASES} that guideopt predicts (shipped terms kept)")
            continue
        fw, lin = result
        used.update(c.source for c in lin.cases)
        path = fit_user_first_token(catalog, key, fw, mine)
        if path is not None:
            value, rows = path
            fit.notes.append(f"{key}: {TERM} {value:g} (shipped {fw.first_token_us_per_layer:g}) from {rows} closed-loop TTFT rows")
            fw = fw.model_copy(update={TERM: value})
        # The user's engine versions only (none given: none claimed), never the shipped rows'.
        fit.overlay.frameworks[key] = fw.model_copy(update={"versions": sorted({c.framework_version for c in lin.cases} - {""})})
    fitted_on = [FittedFile(file=f.file, sha256=f.sha256, rows_fitted=used[f.given]) for f in files]
    fit.overlay = fit.overlay.model_copy(update={"fitted_on": fitted_on})
    return fit
