"""Running a sweep: each scenario not yet in the output is planned, on this process, a pool
of local processes, or a Ray cluster (``guideopt.io.sweep_ray``), and the output is
written sorted by scenario.

Resuming: a scenario whose id (a hash of its request) already has rows in the output, or in
the journal an interrupted run left, is not planned again; its rows are kept. When every
scenario is done already the output is left untouched. Rows of scenarios that are not in
this sweep (the output of another grid) are kept after this sweep's rows. Whatever runs
the scenarios, the rows are the same: plans are deterministic and rows hold no timing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guideopt.io.sweep_rows import RESULT_COLUMNS, Rows, Todo, chunks, plan_chunk, scenario_rows
from guideopt.io.sweep_scenarios import ScenarioSet
from guideopt.io.sweep_table import ID_COLUMN, INDEX_COLUMN, Journal, check_out_path, read_journal, read_rows, write_rows

Progress = Callable[[int, int], None]  # (scenarios done, scenarios to do), after each one


@dataclass
class SweepReport:
    """What a sweep did: scenarios in all, found done, planned now; rows written."""

    out: Path
    scenarios: int
    reused: int
    planned: int
    written: bool
    rows: Rows = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # scenarios by the status of their first row
    kept_other: int = 0  # rows of scenarios not in this sweep, kept at the end


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def run_sweep(
    scenarios: ScenarioSet,
    out: str | os.PathLike[str],
    workers: int | None = None,
    ray_address: str | None = None,
    progress: Progress | None = None,
) -> SweepReport:
    """Plan every scenario not already in ``out`` and write ``out`` sorted by scenario.

    ``workers``: local processes (default: one per CPU, at most one per scenario; 1 plans in
    this process). ``ray_address``: run on Ray instead (``auto``, ``local`` or an address).
    """
    path = check_out_path(out)
    if ray_address:
        from guideopt.io.sweep_ray import import_ray

        import_ray()  # a missing Ray is said before anything is read or run
    old = read_rows(path)
    done, other = _split_old(old, {s.id for s in scenarios.scenarios})
    journal_rows = read_journal(path)
    done.update(journal_rows)
    todo: dict[str, dict[str, Any]] = {}
    for s in scenarios.scenarios:
        if s.id not in done and s.id not in todo:
            todo[s.id] = s.request
    report = SweepReport(path, len(scenarios.scenarios), sum(s.id in done for s in scenarios.scenarios), len(todo), written=False)
    if not todo and not journal_rows:
        report.rows = old
        report.statuses = _statuses(scenarios, done)
        return report
    journal = Journal(path)
    try:
        for finished, (sid, rows) in enumerate(_results(list(todo.items()), workers, ray_address, progress), start=1):
            journal.add(sid, rows)
            done[sid] = rows
            if progress is not None:
                progress(finished, len(todo))
    finally:
        journal.close()
    columns, report.rows = _final_rows(scenarios, done, other)
    write_rows(path, columns, report.rows)
    journal.remove()
    report.written, report.kept_other = True, len(other)
    report.statuses = _statuses(scenarios, done)
    return report


def _split_old(old: Rows, ids: set[str]) -> tuple[dict[str, Rows], Rows]:
    """An earlier output's rows: result columns per scenario id of this sweep, and the rows
    of other scenarios (kept whole)."""
    done: dict[str, Rows] = {}
    other: Rows = []
    for row in old:
        sid = str(row.get(ID_COLUMN) or "")
        if sid in ids:
            done.setdefault(sid, []).append({c: row.get(c) for c in RESULT_COLUMNS})
        else:
            other.append(row)
    return done, other


def _final_rows(scenarios: ScenarioSet, done: Mapping[str, Rows], other: Rows) -> tuple[list[str], Rows]:
    columns = [INDEX_COLUMN, ID_COLUMN, *scenarios.columns, *RESULT_COLUMNS]
    columns += [c for c in dict.fromkeys(k for row in other for k in row) if c not in columns]
    rows: Rows = []
    for s in scenarios.scenarios:
        for result in done[s.id]:
            rows.append({INDEX_COLUMN: s.index, ID_COLUMN: s.id, **s.labels, **result})
    return columns, rows + other


def _statuses(scenarios: ScenarioSet, done: Mapping[str, Rows]) -> dict[str, int]:
    counts = Counter(str(done[s.id][0].get("status") or "") for s in scenarios.scenarios if done.get(s.id))
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------------- where scenarios run


def _results(todo: Todo, workers: int | None, ray_address: str | None, progress: Progress | None) -> Iterator[tuple[str, Rows]]:
    """(scenario id, rows) of each scenario of ``todo``, in the order they finish."""

    def started() -> None:  # after the workers exist: a progress display may start its thread now
        if progress is not None:
            progress(0, len(todo))

    if ray_address:
        from guideopt.io.sweep_ray import ray_results

        yield from ray_results(todo, ray_address, workers, started)
        return
    count = workers if workers is not None else min(available_cpus(), len(todo))
    if count <= 1:
        started()
        for sid, request in todo:
            yield sid, scenario_rows(request)
        return
    yield from _pool_results(todo, count, started)


def _pool_results(todo: Todo, workers: int, started: Callable[[], None]) -> Iterator[tuple[str, Rows]]:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    _warm_up()
    executor = ProcessPoolExecutor(workers, mp_context=_mp_context(), initializer=_ignore_interrupts)
    try:
        futures = [executor.submit(plan_chunk, chunk) for chunk in chunks(todo, workers)]
        started()
        for future in as_completed(futures):
            yield from future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _mp_context() -> Any:
    """Forked workers where the system has fork (they start at once, with the catalog and
    the planner already loaded); elsewhere the platform's default (spawn)."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _warm_up() -> None:
    """Load the catalog and import the planner before forking, so each worker need not."""
    import guideopt.analyses.intervals
    import guideopt.solver.plan  # noqa: F401
    from guideopt.catalog import load_catalog

    load_catalog()


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops the sweep (keeping its journal)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
