"""Measurements users took on their own hardware, as cases to fit and score (``guideopt calibrate``).

Two kinds of file:

* the measured-data CSV of ``shared/data/measured`` (columns ``CSV_COLUMNS``); rows say their
  workload in ``notes`` ("static batch", "closed-loop concurrency");
* benchmark results of vLLM and SGLang (JSON / JSON lines, ``bench_runs.py``): serving runs in
  closed loop (``--max-concurrency``) or open loop (``--request-rate``), and vLLM's
  benchmark_latency static batches.

What comes back says what happened to every run: cases to compare, a ``Skip`` (with its
reason) for each row or run that is not compared, one notice for each file or run given
twice (counted once: the same content hash), and each distinct file's name and sha256 for
the overlay's provenance. A malformed file, or one with an impossible number (``run_checks.py``),
raises ``InvalidRequestError`` with one line naming the file and the line or key.

Only dense models' runs are compared: the engine terms are fitted on dense models (MoE rows
are scored apart, ``mapping.MOE_APART``), so a MoE run is a Skip saying so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from guideopt.calibration.bench_runs import RunContext, json_docs, run_cases, where_of
from guideopt.calibration.cases import Case, CaseOrSkip, Skip
from guideopt.calibration.mapping import to_case
from guideopt.calibration.measurements import load_measurements
from guideopt.calibration.run_checks import output_rate_bound
from guideopt.catalog import Catalog
from guideopt.errors import InvalidRequestError

__all__ = ["RunContext", "UserData", "UserFile", "load_user_files"]

MOE_SKIP = "MoE model: engine terms are fitted on dense models only (MoE runs are scored apart, docs/accuracy-moe.md)"


@dataclass(frozen=True)
class UserFile:
    """One distinct input file, as the overlay's provenance names it."""

    file: str  # base name: the path may say more about the user's machine than the fit needs
    sha256: str
    given: str  # the path as given (cases name it as their source)


@dataclass
class UserData:
    items: list[CaseOrSkip] = field(default_factory=list)
    files: list[UserFile] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # one line each: what was given twice, counted once

    @property
    def cases(self) -> list[Case]:
        return [c for c in self.items if isinstance(c, Case)]

    @property
    def skipped(self) -> list[Skip]:
        return [s for s in self.items if isinstance(s, Skip)]


def _csv_items(path: Path, name: str, catalog: Catalog) -> list[CaseOrSkip]:
    """CSV rows as cases; an impossible value (not a positive number, a throughput beyond the
    GPUs) refuses the file with its line. Cases and skips carry the file as their source."""
    out: list[CaseOrSkip] = []
    for m in load_measurements(path):
        if not math.isfinite(m.value) or m.value <= 0:
            raise InvalidRequestError(f"{name}: line {m.line}: value: {m.value:g} is not positive (a measured time or rate is > 0)")
        item = to_case(m, catalog)
        if isinstance(item, Case) and item.metric == "output_throughput_tok_s":
            bound = output_rate_bound(item.request, catalog)
            if bound is not None and item.measured > bound:
                raise InvalidRequestError(
                    f"{name}: line {m.line}: value: {item.measured:g} tok/s is beyond what its GPUs can compute for {item.request['model']} "
                    f"({bound:.3g} tok/s at the densest tensor peak; check gpu, num_gpus and model)"
                )
        out.append(dataclasses.replace(item, source=name))
    return out


def _json_items(path: Path, name: str, ctx: RunContext, catalog: Catalog, seen_runs: dict[str, str], data: UserData) -> list[CaseOrSkip]:
    out: list[CaseOrSkip] = []
    docs = json_docs(path)
    for line, doc in docs:
        where = where_of(name, line, len(docs))
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        if digest in seen_runs:
            data.duplicates.append(f"{where}: the same run as {seen_runs[digest]} (counted once)")
            continue
        seen_runs[digest] = where
        out += run_cases(doc, ctx, name, line, len(docs), catalog)
    return out


def _dense_only(item: CaseOrSkip, catalog: Catalog) -> CaseOrSkip:
    if isinstance(item, Case) and item.request["model"] in catalog.models and catalog.models[item.request["model"]].is_moe:
        return Skip(MOE_SKIP, item.request["model"], item.line, item.source, item.metric)
    return item


def load_user_files(paths: list[str], ctx: RunContext, catalog: Catalog) -> UserData:
    data = UserData()
    seen_files: dict[str, str] = {}
    seen_runs: dict[str, str] = {}
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InvalidRequestError(f"{name}: no such file (give measured-data CSV or benchmark JSON files)")
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".json", ".jsonl"):
            raise InvalidRequestError(f"{name}: unknown format '{path.suffix}' (use .csv, .json or .jsonl)")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen_files:
            twice = "given more than once" if seen_files[digest] == name else f"the same content as {seen_files[digest]}"
            data.duplicates.append(f"{name}: {twice} (sha256 {digest[:12]}…; counted once)")
            continue
        seen_files[digest] = name
        data.files.append(UserFile(path.name, digest, name))
        if suffix == ".csv":
            try:
                items = _csv_items(path, name, catalog)
            except InvalidRequestError as exc:
                message = str(exc)
                raise InvalidRequestError(message if message.startswith(name) else f"{name}: {message}") from None
        else:
            items = _json_items(path, name, ctx, catalog, seen_runs, data)
        data.items += [_dense_only(item, catalog) for item in items]
    return data
