"""Charts: the Pareto fronts of ``guideopt.analyses.pareto`` drawn with matplotlib (PNG or SVG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from guideopt.analyses.pareto import ParetoPoint, ParetoResult
from guideopt.errors import GuideoptError, InvalidRequestError

PLOT_SUFFIXES = (".png", ".svg")
PLOT_DPI = 150  # sharp enough for a slide or a README at 12 x 5 inches
PLOT_SIZE_IN = (12.0, 5.0)
MAX_FAINT_POINTS = 20_000  # drawing more background candidates adds time, not information
LOG_AXIS_RATIO = 20.0  # an axis spanning more than this factor is drawn on a log scale


def check_plot_path(path: str | os.PathLike[str]) -> Path:
    """The chart path, checked: .png or .svg; its folder is created only when the folder
    above it exists (a typo must not build a tree of folders at the filesystem root)."""
    p = Path(path)
    if p.suffix.lower() not in PLOT_SUFFIXES:
        raise InvalidRequestError(f"plot: unknown image type {p.suffix or '(none)'!r} for {p} (name it .png or .svg)")
    folder = p.parent
    if not folder.parent.is_dir():
        raise InvalidRequestError(f"plot: the folder {folder.parent} does not exist (create it first, or write the chart elsewhere)")
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise InvalidRequestError(f"plot: cannot create the folder of {p} ({exc.strerror or exc})") from None
    return p


def _faint_sample(n: int) -> np.ndarray:
    if n <= MAX_FAINT_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_FAINT_POINTS).astype(int))


def _scale(ax: Any, axis: str, values: np.ndarray) -> None:
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > LOG_AXIS_RATIO:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _label(ax: Any, at: tuple[float, float], text: str) -> None:
    """Label a point, on whichever side of it has more room."""
    ax.autoscale_view()
    x_frac = ax.transAxes.inverted().transform(ax.transData.transform(at))[0]
    right_half = x_frac > 0.5
    ax.annotate(
        text,
        at,
        xytext=(-12 if right_half else 12, -28),
        textcoords="offset points",
        fontsize=8,
        ha="right" if right_half else "left",
        arrowprops={"arrowstyle": "-", "color": "0.3"},
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.6"},
    )


def _panel(
    ax: Any,
    x_all: np.ndarray,
    y_all: np.ndarray,
    front: list[ParetoPoint],
    x_of: str,
    chosen: tuple[float, float] | None,
    chosen_label: str,
    xlabel: str,
) -> None:
    sample = _faint_sample(x_all.size)
    ax.scatter(x_all[sample], y_all[sample], s=6, color="0.75", alpha=0.4, linewidths=0, label="feasible deployments", rasterized=True)
    fx = [getattr(p, x_of) for p in front]
    fy = [p.output_throughput_tok_s for p in front]
    ax.plot(fx, fy, drawstyle="steps-post", color="tab:blue", linewidth=1.5, marker="o", markersize=4, label="Pareto front")
    _scale(ax, "x", x_all)
    _scale(ax, "y", y_all)
    if chosen is not None:
        ax.scatter([chosen[0]], [chosen[1]], s=160, marker="*", color="tab:red", edgecolors="black", zorder=5, label="chosen plan (rank 1)")
        _label(ax, chosen, chosen_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("output throughput (tok/s, whole deployment)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def plot_pareto(result: ParetoResult, path: str | os.PathLike[str]) -> Path:
    """Draw the two fronts (PNG or SVG by the suffix of ``path``) and return the path."""
    target = check_plot_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GuideoptError("plot: matplotlib is not installed (pip install matplotlib)") from None
    chosen = result.chosen_values()
    label = result.chosen.label if result.chosen else "chosen plan"
    fig, (left, right) = plt.subplots(1, 2, figsize=PLOT_SIZE_IN)
    try:
        _panel(
            left,
            result.usd_per_hour,
            result.output_throughput_tok_s,
            result.cost_front,
            "usd_per_hour",
            (chosen[0], chosen[1]) if chosen else None,
            label,
            "cost (USD per hour)",
        )
        _panel(
            right,
            result.batch_latency_s,
            result.output_throughput_tok_s,
            result.latency_front,
            "batch_latency_s",
            (chosen[2], chosen[1]) if chosen else None,
            label,
            "batch latency per replica (s)",
        )
        left.set_title("cost vs throughput")
        right.set_title("latency vs throughput")
        fig.suptitle(f"{result.model}: {result.num_candidates:,} feasible deployments (predicted)")
        fig.tight_layout()
        fig.savefig(target, dpi=PLOT_DPI)
    finally:
        plt.close(fig)
    return target
