"""Aggregate a validation ``Report``: error statistics per metric, breakdowns, markdown."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from guideopt.calibration.mapping import Case, Skip
from guideopt.calibration.results import Report, Result

# Batch-size buckets of the breakdown (inclusive bounds): single stream, small, medium, large.
BATCH_BUCKETS: tuple[tuple[int, int | None, str], ...] = ((1, 1, "1"), (2, 8, "2-8"), (9, 64, "9-64"), (65, None, ">64"))


def batch_bucket(request: Mapping[str, Any]) -> str:
    load = request.get("concurrency") or request.get("batch") or 1
    return next(label for lo, hi, label in BATCH_BUCKETS if load >= lo and (hi is None or load <= hi))


def _framework_key(case: Case) -> str:
    fw = case.request["framework"]
    return f"{fw} (for {case.proxy_of})" if case.proxy_of else fw


GROUP_KEYS: dict[str, Callable[[Case], str]] = {
    "gpu": lambda c: c.request["gpu"],
    "framework": _framework_key,
    "batch": lambda c: batch_bucket(c.request),
    "mode": lambda c: "concurrency" if c.request.get("concurrency") else "static batch",
    "model": lambda c: c.request["model"],
    "tp": lambda c: f"tp {c.request.get('tp', 1)}",
    "workload": lambda c: c.workload,
    "source": lambda c: c.source,
    "metric": lambda c: c.metric,
}
BREAKDOWNS = ("gpu", "framework", "batch", "model", "source", "waves")


def _case_of(item: Case | Result) -> Case:
    return item.case if isinstance(item, Result) else item


def _waves_key(item: Case | Result) -> str:
    if not isinstance(item, Result):
        return "not predicted"
    return "1 wave" if item.waves <= 1 else "several waves"


def cases_by(items: Report | Iterable[Case | Result], key: str | Callable[[Case], str]) -> dict[str, list]:
    """Group a report's results (or a list of cases / results) by a ``GROUP_KEYS`` name (or
    ``"waves"``, results only) or by a function of the ``Case``."""
    seq = items.results if isinstance(items, Report) else [i for i in items if not isinstance(i, Skip)]
    if key == "waves":
        label: Callable[[Case | Result], str] = _waves_key
    else:
        fn = GROUP_KEYS[key] if isinstance(key, str) else key
        label = lambda item: fn(_case_of(item))  # noqa: E731
    groups: dict[str, list] = defaultdict(list)
    for item in seq:
        groups[label(item)].append(item)
    return dict(sorted(groups.items()))


@dataclass(frozen=True)
class Stats:
    count: int
    median_ape: float
    mean_ape: float  # MAPE
    median_ratio: float  # median predicted / measured: the bias direction

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "median_ape": self.median_ape, "mape": self.mean_ape, "median_ratio": self.median_ratio}


def stats(results: Iterable[Result]) -> Stats:
    rs = list(results)
    if not rs:
        raise ValueError("stats of no results")
    apes = [r.ape for r in rs]
    return Stats(len(rs), statistics.median(apes), statistics.fmean(apes), statistics.median(r.ratio for r in rs))


def per_metric(results: Iterable[Result]) -> dict[str, Stats]:
    return {m: stats(rs) for m, rs in cases_by(results, "metric").items()}


def breakdown(report: Report, key: str) -> dict[str, dict[str, Stats]]:
    """{group: {metric: Stats}} for one of ``GROUP_KEYS``."""
    return {group: per_metric(rs) for group, rs in cases_by(report, key).items()}


def skipped_by_reason(skipped: Iterable[Skip]) -> dict[str, Counter]:
    """{reason: Counter(detail)}, reasons ordered by row count."""
    groups: dict[str, Counter] = defaultdict(Counter)
    for s in skipped:
        groups[s.reason][s.detail] += 1
    return dict(sorted(groups.items(), key=lambda kv: -sum(kv[1].values())))


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "rows": len(report.results) + len(report.skipped),
        "compared": len(report.results),
        "skipped": len(report.skipped),
        "distinct_configs": report.distinct_configs,
        "seconds": report.seconds,
        "metrics": {m: s.as_dict() for m, s in per_metric(report.results).items()},
        "by": {k: {g: {m: s.as_dict() for m, s in ms.items()} for g, ms in breakdown(report, k).items()} for k in BREAKDOWNS},
        "skip_reasons": {
            r: {"count": sum(d.values()), "details": dict(d.most_common())} for r, d in skipped_by_reason(report.skipped).items()
        },
    }


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------

SKIP_DETAILS_SHOWN = 3  # most frequent details listed per skip reason


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _stats_cells(s: Stats) -> list[str]:
    return [str(s.count), _pct(s.median_ape), _pct(s.mean_ape), f"{s.median_ratio:.2f}"]


STATS_HEADER = ["n", "median APE", "MAPE", "median pred/meas"]


def report_markdown(report: Report) -> str:
    total = len(report.results) + len(report.skipped)
    out = [
        "# guideopt vs measured",
        "",
        f"{len(report.results)} of {total} rows compared ({report.distinct_configs} distinct configurations, "
        f"{report.seconds:.1f} s); {len(report.skipped)} skipped.",
        "",
        "## Per metric",
        "",
    ]
    out += _table(["metric"] + STATS_HEADER, [[m] + _stats_cells(s) for m, s in per_metric(report.results).items()])
    for key in BREAKDOWNS:
        rows = [[g, m] + _stats_cells(s) for g, ms in breakdown(report, key).items() for m, s in ms.items()]
        out += ["", f"## By {key}", ""] + _table([key, "metric"] + STATS_HEADER, rows)
    skip_rows = []
    for reason, details in skipped_by_reason(report.skipped).items():
        shown = "; ".join(f"{d or '—'} ({n})" for d, n in details.most_common(SKIP_DETAILS_SHOWN))
        more = len(details) - SKIP_DETAILS_SHOWN
        skip_rows.append([reason, str(sum(details.values())), shown + (f"; … {more} more" if more > 0 else "")])
    out += ["", "## Skipped rows", ""] + _table(["reason", "rows", "most frequent details"], skip_rows)
    return "\n".join(out) + "\n"
