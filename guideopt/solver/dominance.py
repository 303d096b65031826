"""Dominance in plain numpy: Pareto fronts and per-shape pruning of the option table.

Options of one deployment shape (GPU type, engine, precision class, TP, PP) cost the same
and use the same GPUs, so one that is no better in any metric the request uses than
another of its shape can never be chosen; the lexicographic optimum of any order of the
objective terms lies on the Pareto front of the candidates that meet every limit.
"""

from __future__ import annotations

import bisect

import numpy as np

from guideopt.costs.tables import OptionTable, lex_ids
from guideopt.model.dtype import Dtype
from guideopt.model.request import ObjectiveTerm
from guideopt.solver.terms import metric_columns

# Comparisons held at once by the many-column skyline (booleans; bounds its memory).
SKYLINE_BLOCK_CELLS = 1 << 22
# Groups up to this many rows are compared all pairs at once (padded to a multiple of
# WIDTH_STEP rows, into one array per width); larger ones are swept one by one against
# their growing front.
SMALL_GROUP = 512
WIDTH_STEP = 16


def skyline(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mask of the rows not dominated within their ``group`` (smaller is better in every
    column of ``values``); of identical rows the first (lowest index) is kept.

    One sort by (group, columns…, index) puts every row after all rows that could dominate
    it. Two columns: a row is dominated when the running minimum of column 2 over the
    earlier rows of its group is no larger — one vectorised sweep, O(n log n) in all. More
    columns: each row is compared with the earlier rows of its group only (groups padded
    to one array per width, in blocks), O(n·m) for groups of at most m rows.
    """
    n = values.shape[0]
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    if values.shape[1] == 1:
        values = np.concatenate([values, np.zeros((n, 1))], axis=1)
    _, g = np.unique(group, return_inverse=True)
    g = g.ravel().astype(np.int64)
    order = np.lexsort((np.arange(n), *values.T[::-1], g))
    if values.shape[1] == 2:
        keep[order] = _sweep_2d(g[order], values[order, 1])
        return keep
    sizes = np.bincount(g)
    # groups padded to the next multiple of WIDTH_STEP rows, each width compared on its own
    width = -(-sizes // WIDTH_STEP) * WIDTH_STEP
    width[sizes > SMALL_GROUP] = 0
    sorted_g, sorted_values, row_width = g[order], values[order], width[g[order]]
    for w in np.unique(width[width > 0]).tolist():
        mine = row_width == w
        keep[order[mine]] = _blocks(sorted_g[mine], sorted_values[mine], w)
    for big in np.nonzero(sizes > SMALL_GROUP)[0]:  # few, large groups: one sweep each
        rows = np.nonzero(g == big)[0]
        keep[rows[_large_front(values[rows])]] = True
    return keep


def _sweep_2d(g: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Rows sorted by (group, first column): kept when strictly below every earlier row of
    the group in the second column. Ranks stacked so that each group's are below all
    earlier groups' make one running minimum restart at every group."""
    _, rank = np.unique(second, return_inverse=True)
    rank = rank.ravel().astype(np.int64)
    span = int(rank.max()) + 1
    stacked = rank + (int(g.max()) - g) * span
    prior = np.concatenate([[np.iinfo(np.int64).max], np.minimum.accumulate(stacked)[:-1]])
    first = np.concatenate([[True], g[1:] != g[:-1]])
    return first | (stacked < prior)


def _blocks(g: np.ndarray, v: np.ndarray, width: int) -> np.ndarray:
    """Rows sorted by (group, columns), groups of at most ``width`` rows: kept when no
    earlier row of the group is no worse in every column."""
    n, d = v.shape
    starts = np.concatenate([[0], np.nonzero(g[1:] != g[:-1])[0] + 1])
    sizes = np.diff(np.concatenate([starts, [n]]))
    pos = np.arange(n) - np.repeat(starts, sizes)
    padded = np.full((starts.size, width, d), np.inf)
    padded[np.repeat(np.arange(starts.size), sizes), pos] = v
    earlier = np.tri(width, k=-1, dtype=bool).T  # earlier[i, j]: row i before row j
    dominated = np.zeros((starts.size, width), dtype=bool)
    step = max(1, SKYLINE_BLOCK_CELLS // (width * width))
    for lo in range(0, starts.size, step):
        block = padded[lo : lo + step]
        # rows are sorted by the first column, so an earlier row is never worse in it
        no_worse = np.broadcast_to(earlier, (block.shape[0], width, width)).copy()  # [b, i, j]
        for col in range(1, d):
            values = block[:, :, col]
            no_worse &= values[:, :, None] <= values[:, None, :]
        dominated[lo : lo + step] = no_worse.any(axis=1)
    return ~dominated[np.repeat(np.arange(starts.size), sizes), pos]


def _large_front(values: np.ndarray) -> np.ndarray:
    """Indices of rows of ``values`` (smaller is better in every column) not dominated by another.

    Rows are visited in lexicographic order, so a row can only be dominated by one seen
    before it; identical rows keep the first. The lexicographic optimum of any order of
    the columns lies on this front, so the model loses nothing by seeing only it.
    """
    order = np.lexsort(values.T[::-1])
    if values.shape[1] == 2:  # two columns: one sweep over the sorted rows
        best = np.minimum.accumulate(values[order, 1])
        prior = np.concatenate([[np.inf], best[:-1]])
        return np.sort(order[values[order, 1] < prior])
    if values.shape[1] == 3 and order.size > PARETO_BLOCK:
        return _pareto_front_3d(values)
    if order.size <= PARETO_BLOCK:  # one comparison matrix
        block = values[order]
        no_worse = (block[:, None, :] <= block[None, :, :]).all(axis=2)
        return np.sort(order[~np.triu(no_worse, k=1).any(axis=0)])
    # Blocks of sorted rows: a row is dropped when an earlier row (kept, or earlier in its
    # block) is no worse in every column; by transitivity earlier dominated rows may be used.
    kept_rows: list[np.ndarray] = []
    kept = np.empty((0, values.shape[1]), dtype=values.dtype)
    for start in range(0, order.size, PARETO_BLOCK):
        idx = order[start : start + PARETO_BLOCK]
        block = values[idx]
        if kept.size:
            dominated = np.any(np.all(kept[None, :, :] <= block[:, None, :], axis=2), axis=1)
        else:
            dominated = np.zeros(idx.size, dtype=bool)
        no_worse = (block[:, None, :] <= block[None, :, :]).all(axis=2)
        dominated |= np.triu(no_worse, k=1).any(axis=0)
        kept_rows.append(idx[~dominated])
        kept = np.vstack([kept, block[~dominated]])
    return np.sort(np.concatenate(kept_rows))


def _pareto_front_3d(values: np.ndarray) -> np.ndarray:
    """Three columns: visit rows by (c, a, b) so every earlier row is no worse in c, and keep
    the staircase of kept (a, b) points: a row is dominated when some kept point has a <= its
    a and b <= its b, found by bisection on a (prefix minima of b)."""
    order = np.lexsort((values[:, 1], values[:, 0], values[:, 2]))
    stair_a: list[float] = []  # ascending a
    stair_b: list[float] = []  # strictly decreasing b (prefix minima)
    keep: list[int] = []
    for i in order:
        a, b = float(values[i, 0]), float(values[i, 1])
        pos = bisect.bisect_right(stair_a, a)
        if pos and stair_b[pos - 1] <= b:
            continue
        keep.append(int(i))
        # insert (a, b) and drop points it makes redundant (a' >= a with b' >= b)
        end = pos
        while end < len(stair_a) and stair_b[end] >= b:
            end += 1
        stair_a[pos:end] = [a]
        stair_b[pos:end] = [b]
    return np.array(sorted(keep), dtype=int)


# Rows compared at once in ``_large_front`` (memory: block² + block·front comparisons).
PARETO_BLOCK = 256


# Mixed-radix slots of the integer shape keys: each field's index must stay below its slot
# size, so the key is unique. Catalog sizes are far below them (a few engines, a handful of
# precisions, TP/PP sizes up to a few hundred); GPU types need no slot (leading digit).
FRAMEWORK_SLOTS = 64
DTYPE_SLOTS = 16
PARALLEL_SIZE_SLOTS = 1024  # TP or PP size (a value, not an index)


def shape_key(table: OptionTable) -> np.ndarray:
    """One integer per deployment shape (GPU type, framework, dtype, layout: TP, attention
    DP, EP, PP), numbered in the order of those columns."""
    # fp16 and bf16 run at the same speed and size: one shape, not two near-identical plans.
    precision_class = np.array([Dtype.FP16.value if d.is_float16 else d.value for d in table.space.dtypes])
    _, dtype_class = np.unique(precision_class, return_inverse=True)
    if len(table) == 0:
        return np.zeros(0, dtype=np.int64)
    return lex_ids(table.gpu_idx, table.fw_idx, dtype_class[table.dtype_idx], table.tp, table.dp, table.ep, table.pp)


def non_dominated(table: OptionTable, terms: set[ObjectiveTerm] | None = None) -> np.ndarray:
    """Indices of options not dominated by another option of the same deployment shape.

    Options of one shape cost the same and use the same GPUs, so one that is no better in
    any metric the request uses (``terms``) can never be chosen. Pruning stays inside a
    shape so that top-k plans, which exclude whole shapes, lose nothing. Ties keep the
    first option in table order, so the result is deterministic.
    """
    if len(table) == 0:
        return np.zeros(0, dtype=int)
    values = metric_columns(table.metrics, terms if terms is not None else set(ObjectiveTerm))
    return np.nonzero(skyline(shape_key(table), values))[0]


def prune_groups(rows: np.ndarray, group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows (of ``rows``, ascending) on the Pareto front of ``values`` within their ``group``."""
    rows = np.sort(rows)
    return rows[skyline(group[rows], values[rows])]
