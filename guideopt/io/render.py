"""Human-readable text tables for plans, predictions and catalogs (no I/O here).

Tables are drawn by ``rich`` and fit the terminal's width, or ``COLUMNS`` when it is set
(``COLUMNS=80 guideopt plan ... | less``): a table too wide is folded into several, each
repeating its key columns (rank, gpu), and long prose lines wrap; cells never wrap (a value
split over lines misreads). Piped or redirected without ``COLUMNS``, nothing is folded or
wrapped, so scripts and ``grep`` see whole rows. Memory in
tables is in GiB (2^30 bytes), the unit GPU makers mean by "80 GB": an H100 shows 80,
as in ``guideopt catalog gpus``. The JSON keeps the contract's SI gigabytes (``*_gb``).
On a terminal each plan table is followed by a legend of its column names (``plan
--help`` and ``solve --help`` show it too).
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from rich.box import Box
from rich.console import Console
from rich.table import Table

from guideopt.model.layout_names import layout_code, layout_words
from guideopt.model.plan import Plan, PlanResult
from guideopt.units import BYTES_PER_GB, BYTES_PER_GIB

# Width when the output is not a terminal: wide enough that no table row ever wraps.
UNWRAPPED_WIDTH = 1000
# Legend lines are wrapped to the terminal, or to this many columns when piped.
LEGEND_WIDTH = 100
# The narrowest width fitted to: a key column and one value column still show whole.
MIN_WIDTH = 40
# Prose lines wrapped to the width continue under a hanging indent of this many spaces.
WRAP_INDENT = "  "
# A header underlined with dashes, columns two spaces apart, no borders (plain ASCII,
# so the output reads the same in any terminal, file or diff).
PLAIN_HEAD = Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)
GIB_PER_GB = BYTES_PER_GB / BYTES_PER_GIB

PLAN_COLUMNS = (
    "rank",
    "gpu",
    "gpus",
    "layout",
    "engine",
    "dtype",
    "batch",
    "split",
    "$/h",
    "out tok/s",
    "ttft ms",
    "tpot ms",
    "batch s",
    "GiB/gpu",
    "of GiB",
)
PLAN_KEY_COLUMNS = 2  # rank, gpu: repeated in each part of a folded plan table
PLAN_LEGEND = (
    "layout RxT·P: R replicas, each on tp·pp GPUs (tensor x pipeline parallel); batch: requests per replica; "
    "split: tokens per forward pass (chunked prefill); $/h: the whole plan; out tok/s: output tokens/s of the group; "
    "ttft/tpot ms: time to first token / per output token after it; batch s: until the batch is done; "
    "GiB/gpu of GiB: memory used per GPU of its capacity (GiB = 2^30 bytes)."
)


def terminal_width() -> int:
    """The width to fit: ``COLUMNS`` when set, else the terminal's; unwrapped when piped."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return max(int(columns), MIN_WIDTH)
    return max(shutil.get_terminal_size().columns, MIN_WIDTH) if sys.stdout.isatty() else UNWRAPPED_WIDTH


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None, key: int = 1) -> str:
    """A plain table: a header, a rule, one line per row, fitted to ``width`` (default:
    :func:`terminal_width`). Too wide, it is folded into parts stacked one under the other,
    each starting with the first ``key`` columns (which name the row); cells never wrap."""
    width = width or terminal_width()
    cells = [[_fmt(v) for v in row] for row in rows]
    parts = [_render(_grid(headers, cells, cols), width) for cols in _fold(headers, cells, width, key)]
    return "\n\n".join(parts)


def _fold(headers: Sequence[str], cells: list[list[str]], width: int, key: int) -> list[list[int]]:
    """Column indices of each part: the key columns, then as many of the rest as fit."""
    ruler = Console(file=io.StringIO(), width=UNWRAPPED_WIDTH, color_system=None)  # measures the natural width
    key = min(key, len(headers))
    rest = list(range(key, len(headers)))
    parts: list[list[int]] = []
    while rest or not parts:
        cols = list(range(key))
        while rest and (len(cols) == key or ruler.measure(_grid(headers, cells, cols + rest[:1])).maximum <= width):
            cols.append(rest.pop(0))
        parts.append(cols)
    return parts


def _render(grid: Table, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False, highlight=False, emoji=False)
    console.print(grid)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines() if line.strip())  # type: ignore[attr-defined]


def _grid(headers: Sequence[str], cells: list[list[str]], keep: list[int]) -> Table:
    grid = Table(box=PLAIN_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="")
    for i in keep:
        grid.add_column(str(headers[i]), no_wrap=True, overflow="ellipsis")
    for row in cells:
        grid.add_row(*(row[i] for i in keep))
    return grid


def fit_lines(text: str, width: int | None = None) -> str:
    """Text with each line longer than the width wrapped under a hanging indent (tables,
    already fitted, are left as they are); piped without ``COLUMNS`` nothing changes."""
    width = width or terminal_width()
    out = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
        else:
            indent = line[: len(line) - len(line.lstrip())]
            out.append(
                textwrap.fill(line, width=width, subsequent_indent=indent + WRAP_INDENT, break_long_words=False, break_on_hyphens=False)
            )
    return "\n".join(out)


def legend(text: str) -> str:
    """A legend wrapped to the terminal (or LEGEND_WIDTH when piped)."""
    width = terminal_width()
    return textwrap.fill(text, width=LEGEND_WIDTH if width == UNWRAPPED_WIDTH else width)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def gib(gb: float) -> float:
    """SI gigabytes (the JSON's unit) to GiB (the tables' unit)."""
    return gb * GIB_PER_GB


INTERVAL_COLUMNS = ("rank", "gpu", "out tok/s", "ttft ms", "tpot ms", "batch s")
INTERVAL_METRICS = ("output_throughput_tok_s", "ttft_ms", "tpot_ms", "batch_latency_s")


def _interval_rows(result: PlanResult) -> list[list[str]]:
    """Per plan group, each metric's interval as "low – high" (groups without one are left out)."""
    rows = []
    for p in result.plans:
        for g in p.groups:
            low, high = g.metrics_low, g.metrics_high
            if low is None or high is None:
                continue
            cells = [f"{_fmt(getattr(low, k))} – {_fmt(getattr(high, k))}" for k in INTERVAL_METRICS]
            rows.append([str(p.rank), g.gpu, *cells])
    return rows


def plan_text(result: PlanResult) -> str:
    head = f"status: {result.status}   objective: {' > '.join(result.objective)}   solve time: {result.solve_time_s:.3f} s"
    rows = []
    for p in result.plans:
        for g in p.groups:
            m = g.metrics
            rows.append(
                [p.rank, g.gpu, g.num_gpus, _layout(g), g.framework, g.dtype, g.batch, g.split, p.usd_per_hour]
                + [m.output_throughput_tok_s, m.ttft_ms, m.tpot_ms, m.batch_latency_s]
                + [gib(g.memory.total_per_gpu_gb), gib(g.memory.gpu_memory_gb)]
            )
    text = f"{head}\n{table(PLAN_COLUMNS, rows, key=PLAN_KEY_COLUMNS)}"
    ranges = _interval_rows(result)
    if ranges:
        text += f"\nprediction intervals (held-out errors in each group's regime, docs/accuracy.md):\n{table(INTERVAL_COLUMNS, ranges, key=PLAN_KEY_COLUMNS)}"
    if sys.stdout.isatty():  # people read the legend; scripts reading a pipe get the rows only (--help has it too)
        text += f"\n{legend(PLAN_LEGEND)}"
    for p in result.plans:
        shares = [f"{g.traffic_share:.0%} to {g.gpu}" for g in p.groups if len(p.groups) > 1 and g.role is None]
        if shares:
            text += f"\nplan {p.rank}: send " + ", ".join(shares) + " of the requests (in proportion to throughput)"
    text += "".join(f"\n{line}" for line in _layout_legend(result) + stream_lines(result))
    if result.disaggregation and result.disaggregation.get("note"):
        text += f"\n{result.disaggregation['note']}"
    best = result.homogeneous_best
    if best is not None:
        if best.get("plan") is None:
            text += "\nno single-GPU-type plan satisfies these constraints: only a mix does"
        else:
            single = best["plan"]
            text += (
                f"\nbest single-GPU-type plan: {single['metrics']['output_throughput_tok_s']:,.0f} tok/s for "
                f"${single['usd_per_hour']:.2f}/h on {', '.join(single['gpu_counts'])}; plan 1 gives "
                f"{best['throughput_gain']:+.1%} throughput, {best['throughput_per_usd_gain']:+.1%} per dollar"
            )
    return fit_lines(text)


def stream_percentile(plan: Plan) -> float | int:
    """The percentile a stream plan's SLOs are set at (90, not 90.0, when whole)."""
    q = (plan.stream or {}).get("percentile", 90)
    return int(q) if float(q).is_integer() else q


def plan_stream_text(plan: Plan) -> str:
    """A stream plan in one line: the load, what one shape sustains, the percentiles
    (analytic and simulated) and the simulation's verdict (PLAN.md says the same)."""
    s = plan.stream or {}
    q = stream_percentile(plan)
    load = f"{s['rate_rps']:g} req/s" if s.get("rate_rps") is not None else f"{s['concurrency']} clients"
    parts = [f"{load} (sustains {s['sustainable_load']:.1f} {s['sustainable_unit']})"]
    if plan.kv_transfer:  # one stream for both pools: its percentiles once, and the hand-over
        kv = plan.kv_transfer
        wire = f" ({kv['wire_ms']:.1f} ms on the wire, overlapped with the prompt)" if kv.get("wire_ms", 0) > kv["ms"] else ""
        parts.append(
            f"KV hand-over {kv['bytes_per_request'] / 1e6:.1f} MB per request over {kv['link']}: {kv['ms']:.1f} ms after the prompt{wire}"
        )
    for g in plan.groups[:1] if plan.kv_transfer else plan.groups:
        stream = g.stream or {}
        for metric in ("ttft_ms", "tpot_ms"):
            analytic = (stream.get("analytic") or {}).get(metric, {}).get(f"p{q}")
            simulated = (stream.get("simulated") or {}).get(metric, {}).get(f"p{q}")
            if analytic is not None:
                sim = f" / {simulated:.1f} simulated" if simulated is not None else ""
                parts.append(f"P{q} {metric.removesuffix('_ms').upper()} {analytic:.1f} ms analytic{sim}")
    verdict = {True: "yes", False: "no", None: "not simulated"}[s.get("simulated_meets_slo")]
    parts.append(f"simulation meets the SLOs: {verdict}")
    return "; ".join(parts)


def stream_lines(result: PlanResult) -> list[str]:
    """For a request stream: the load each plan serves and its percentiles, analytic and simulated."""
    lines = [f"plan {p.rank}: {plan_stream_text(p)}" for p in result.plans if p.stream]
    if lines and result.verification_rounds is not None:
        lines.append(f"verification: {result.verification_rounds} round(s) of rank, simulate, cut")
    first = result.plans[0].stream if result.plans else None
    if first and first.get("max_load"):
        load = f"{first['rate_rps']:g} req/s" if first.get("rate_rps") is not None else f"{first['concurrency']} clients"
        lines.insert(0, f"highest load the budget and limits serve within the SLOs: {load} (the plans below serve it)")
    return lines


def _layout(g) -> str:
    if g.stages:  # a pipeline across GPU types: stage by stage
        stages = " → ".join(f"{st['gpu']} tp{st['tp']} {st['layers']}L" for st in g.stages)
        return f"{g.replicas}x[{stages}]"
    role = f"{g.role} " if g.role else ""  # disaggregated: prefill / decode workers
    return f"{role}{g.replicas}x({layout_code(g.tp, g.pp, g.attention_dp, g.moe_ep)})"


def _layout_legend(result: PlanResult) -> list[str]:
    """One line per MoE layout shown, in words (``DEP8: attention DP 8, experts EP 8``)."""
    seen = dict.fromkeys(g.layout for p in result.plans for g in p.groups if g.layout and (g.attention_dp > 1 or g.moe_ep > 1))
    return [f"layout {words}" for words in seen if words]


def memory_table(memory: dict[str, Any]) -> str:
    """A memory breakdown (the JSON's ``*_gb`` keys) in GiB per GPU."""
    return table(["memory per GPU", "GiB"], [[k.removesuffix("_gb"), gib(v)] for k, v in memory.items()])


def _interval_text(pred: dict[str, Any], metric: str) -> str:
    """'low – high' from held-out errors in the prediction's regime; '—' where none is known."""
    low, high = pred.get("metrics_low", {}).get(metric), pred.get("metrics_high", {}).get(metric)
    if low is None or high is None or low == high:
        return "—"
    return f"{low:.4g} – {high:.4g}"


def _load_text(pred: dict[str, Any]) -> str:
    if pred.get("concurrency") is not None:
        return f"{pred['concurrency']} closed-loop clients ({pred['batch_per_replica']} per replica)"
    return f"batch {pred['batch']} ({pred['batch_per_replica']} per replica, {pred['waves']} wave(s))"


def prediction_text(pred: dict[str, Any]) -> str:
    m, mem = pred["metrics"], pred["memory"]
    words = layout_words(pred["tp"], pred["pp"], pred.get("attention_dp", 1), pred.get("moe_ep", 1))
    layout = f"{pred['replicas']}x({words}) on {pred['num_gpus']} x {pred['gpu']}"
    lines = [
        f"{pred['model']} · {pred['framework']} · {pred['dtype']} · {layout}",
        f"{_load_text(pred)}, input {pred['input_len']}, output {pred['output_len']}",
        "",
        table(
            ["metric", "value", "10-90 % interval"],
            [[k, v, _interval_text(pred, k)] for k, v in m.items()],
        ),
        "",
        memory_table(mem),
        f"KV cache holds {pred['kv_cache_tokens']:,} tokens: at most {pred['max_batch']} requests of this length at once per replica",
    ]
    return fit_lines("\n".join(lines))
