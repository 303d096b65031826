"""Calibration overlays: a user's own fit of the engine terms, laid over the shipped calibration.

``guideopt calibrate`` writes one; ``--calibration FILE`` applies it. An overlay holds only
the entries the user's rows support (engine keys such as ``vllm`` or ``vllm@amd``); every
other value stays as shipped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml
from pydantic import Field

from guideopt.catalog import Catalog
from guideopt.errors import InvalidRequestError
from guideopt.model.base import StrictModel
from guideopt.model.calibration import Calibration, ClosedLoopSync, FrameworkEfficiency
from guideopt.model.gpu import Vendor
from guideopt.model.limits import MAX_OVERLAY_FILE_BYTES
from guideopt.model.unique_keys import DuplicateKeyError, loads_yaml
from guideopt.model.validation import booleans_as_text, validated

OVERLAY_VERSION = "overlay"


class FittedFile(StrictModel):
    """One of the user's measurement files a fit came from."""

    file: str = Field(min_length=1, description="base name of the file as given to `guideopt calibrate`")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hash of its content: the same file gives the same hash anywhere")
    rows_fitted: int = Field(default=0, ge=0, description="its rows (a serving run has one per metric) the fit used")


class CalibrationOverlay(StrictModel):
    version: str = OVERLAY_VERSION
    generated_by: str = "guideopt calibrate"
    fitted_on: list[FittedFile] = Field(
        default_factory=list, description="the user's files given to the fit, with the rows it used of each"
    )
    prior: str = Field(default="", description="what the fit started from and was pulled toward (the shipped calibration)")
    frameworks: dict[str, FrameworkEfficiency] = Field(default_factory=dict)
    closed_loop: ClosedLoopSync | None = Field(
        default=None, description="replaces the shipped closed-loop lockstep share (e.g. 0 for clients that do not start together)"
    )


def apply_overlay(cal: Calibration, overlay: CalibrationOverlay) -> Calibration:
    update: dict = {"frameworks": {**cal.frameworks, **overlay.frameworks}}
    if overlay.closed_loop is not None:
        update["closed_loop"] = overlay.closed_loop
    return cal.model_copy(update=update)


def read_overlay(path: str | Path) -> CalibrationOverlay:
    size = Path(path).stat().st_size if Path(path).is_file() else 0  # checked before reading; a missing file is named below
    if size > MAX_OVERLAY_FILE_BYTES:
        raise InvalidRequestError(
            f"--calibration: {path} is {size:,} bytes, over the {MAX_OVERLAY_FILE_BYTES:,}-byte limit for an overlay (write the file with `guideopt calibrate`)"
        )
    try:
        data = loads_yaml(Path(path).read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise InvalidRequestError(f"--calibration: {exc.located(str(path))}") from None
    except FileNotFoundError:
        raise InvalidRequestError(f"--calibration: {path}: no such file (write one with `guideopt calibrate`)") from None
    except UnicodeDecodeError:
        raise InvalidRequestError(f"--calibration: {path}: not UTF-8 text (write the file with `guideopt calibrate`)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise InvalidRequestError(f"--calibration: {path}: {where}not valid YAML") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"--calibration: {path}: expected a mapping with a frameworks key (write the file with `guideopt calibrate`)"
        )
    try:  # the wording every surface shares; true/false is not a number here either
        return validated(CalibrationOverlay, booleans_as_text(data))
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"--calibration: {path}: {exc}") from None


def with_overlay(catalog: Catalog, path: str | Path | None) -> Catalog:
    if path is None:
        return catalog
    overlay = read_overlay(path)
    check_engine_keys(overlay, catalog, str(path))
    return dataclasses.replace(catalog, calibration=apply_overlay(catalog.calibration, overlay))


def check_engine_keys(overlay: CalibrationOverlay, catalog: Catalog, where: str) -> None:
    """Every ``frameworks`` key names an engine family, as ``vllm`` or ``vllm@amd`` (a
    misspelt key would otherwise be laid over nothing and silently ignored)."""
    engines = sorted({fw.calibration_id for fw in catalog.frameworks.values()})
    vendors = {v.value for v in Vendor}
    for key in overlay.frameworks:
        engine, _, vendor = key.partition("@")
        if engine not in engines or (vendor and vendor not in vendors):
            raise InvalidRequestError(
                f"--calibration: {where}: frameworks.{key}: not an engine (engines: {', '.join(engines)}; "
                f"another vendor's terms as ENGINE@VENDOR, e.g. vllm@amd)"
            )


def write_overlay(overlay: CalibrationOverlay, path: str | Path) -> None:
    header = "# Written by `guideopt calibrate`; use with --calibration FILE. Only these entries replace the shipped ones.\n"
    Path(path).write_text(header + yaml.safe_dump(overlay.model_dump(), sort_keys=False, width=200), encoding="utf-8")
