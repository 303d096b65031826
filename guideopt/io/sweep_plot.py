"""The summary chart of a sweep (``guideopt sweep --plot FILE.png``), drawn with matplotlib.

Two panels against the sweep's load (its ``rate_rps`` or ``concurrency`` key; else its
budget; else the scenario number): the cheapest plan's $/h, and the lowest $ per million
output tokens, one line per model (per value of the sweep's ``model`` key). Each point is
the best over the scenarios that share that model and load (GPU sets, price tiers,
budgets...); a load where no scenario of a model has a plan is left out of its line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guideopt.errors import GuideoptError
from guideopt.io.sweep_rows import Rows
from guideopt.io.sweep_scenarios import ScenarioSet
from guideopt.io.sweep_table import ID_COLUMN, INDEX_COLUMN

X_KEYS = (("workload", "rate_rps"), ("workload", "concurrency"), ("budget", "usd_per_hour"))
PLANNED = ("optimal", "feasible")
PANELS = (("usd_per_hour", "cheapest plan (USD per hour)"), ("usd_per_million_output_tokens", "lowest USD per million output tokens"))
SIZE_IN = (12.0, 5.0)
ALL_SCENARIOS = "all scenarios"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN: no value


def x_column(scenarios: ScenarioSet, rows: Rows) -> str:
    """The load column with at least two numeric values, else INDEX_COLUMN."""
    for path in X_KEYS:
        column = scenarios.column_for(path)
        if column is not None and len({_number(r.get(column)) for r in rows} - {None}) > 1:
            return column
    return INDEX_COLUMN


def best_points(scenarios: ScenarioSet, rows: Rows) -> tuple[str, dict[str, dict[str, dict[float, float]]]]:
    """(x column, {metric: {series: {x: best value}}}) over this sweep's planned rows."""
    ids = {s.id for s in scenarios.scenarios}
    mine = [r for r in rows if str(r.get(ID_COLUMN)) in ids]
    x_col = x_column(scenarios, mine)
    series_col = scenarios.column_for(("model",))
    out: dict[str, dict[str, dict[float, float]]] = {metric: {} for metric, _ in PANELS}
    for row in mine:
        x = _number(row.get(x_col))
        if row.get("status") not in PLANNED or x is None:
            continue
        series = str(row.get(series_col)) if series_col else ALL_SCENARIOS
        for metric, _ in PANELS:
            value = _number(row.get(metric))
            if value is not None:
                line = out[metric].setdefault(series, {})
                line[x] = min(value, line.get(x, value))
    return x_col, out


def plot_sweep(scenarios: ScenarioSet, rows: Rows, path: str | os.PathLike[str]) -> Path:
    """Draw the chart (PNG or SVG by the suffix of ``path``) and return the path."""
    from guideopt.io.plots import PLOT_DPI, check_plot_path

    target = check_plot_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GuideoptError("plot: matplotlib is not installed (pip install matplotlib)") from None
    x_col, points = best_points(scenarios, rows)
    fig, axes = plt.subplots(1, len(PANELS), figsize=SIZE_IN)
    try:
        for ax, (metric, title) in zip(axes, PANELS):
            _panel(ax, points[metric], x_col, title)
        ids = {s.id for s in scenarios.scenarios}
        planned = len({str(r.get(INDEX_COLUMN)) for r in rows if str(r.get(ID_COLUMN)) in ids and r.get("status") in PLANNED})
        fig.suptitle(f"{Path(scenarios.source).name}: {planned:,} of {len(scenarios.scenarios):,} scenarios have a plan")
        fig.tight_layout()
        fig.savefig(target, dpi=PLOT_DPI)
    finally:
        plt.close(fig)
    return target


def _panel(ax: Any, lines: Mapping[str, Mapping[float, float]], x_col: str, title: str) -> None:
    for series, line in sorted(lines.items()):
        xs = sorted(line)
        ax.plot(xs, [line[x] for x in xs], marker="o", markersize=4, linewidth=1.5, label=series)
    ax.set_xlabel(x_col)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no scenario has a plan", ha="center", va="center", transform=ax.transAxes)
