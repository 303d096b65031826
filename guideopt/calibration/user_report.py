"""What ``guideopt calibrate`` says about the runs it did not compare: one line each.

A run left out of the comparison (not modelled, an unknown id, a MoE model, a configuration
guideopt cannot predict) is one entry, its metrics together: the file, the line, the reason
and its detail. On stderr each file lists at most ``MAX_SKIP_LINES_PER_FILE`` of them and
then counts the rest by reason (the shipped e2e.csv skips thousands of rows); ``--json``
lists them all.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from guideopt.calibration.cases import Skip

# Skipped runs listed one a line per file on stderr; a user's own files skip a handful, and
# beyond this many lines a reader wants the reasons counted rather than scrolled.
MAX_SKIP_LINES_PER_FILE = 50


def skipped_runs(skips: list[Skip]) -> list[dict[str, Any]]:
    """One entry per skipped run or row (its skipped metrics together), in file order."""
    runs: dict[tuple, dict[str, Any]] = {}
    for s in skips:
        key = (s.source, s.line, s.reason, s.detail)
        entry = runs.setdefault(key, {"file": s.source, "line": s.line, "reason": s.reason, "detail": s.detail, "metrics": []})
        if s.metric:
            entry["metrics"].append(s.metric)
    return list(runs.values())


def skip_lines(runs: list[dict[str, Any]]) -> list[str]:
    by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_file[r["file"]].append(r)
    out = []
    for name, entries in by_file.items():
        for r in entries[:MAX_SKIP_LINES_PER_FILE]:
            detail = f": {r['detail']}" if r["detail"] else ""
            out.append(f"skipped {name}: line {r['line']}: {r['reason']}{detail}")
        rest = Counter(r["reason"] for r in entries[MAX_SKIP_LINES_PER_FILE:])
        if rest:
            counts = "; ".join(f"{reason} ({n})" for reason, n in rest.most_common())
            out.append(f"skipped {name}: {sum(rest.values())} more: {counts}")
    return out
