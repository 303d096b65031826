"""The step table's interpolation, compiled (numba): what ``table.StepTable`` answers and
what the simulator's kernel (``kernel.py``) calls once per step.

Each function repeats the floating-point operations of the code it stands for, in the same
order, so that compiled runs give the same times bit for bit:

* ``mixed_s``: the 4-D multilinear interpolation of a step with prompt tokens (corner
  weights multiplied axis by axis, summed in corner order) and the decode-only row
  interpolation (``ys[i] + f · (ys[i+1] − ys[i])``, f clipped to [0, 1]);
* ``decode_run_s``: ``numpy.interp`` of a decode row (slope · (x − x_j) + y_j, end values
  outside the axis), which runs of decode steps have always used;
* ``numpy_sum``: ``numpy.sum`` of a float array (numpy's pairwise summation: blocks of 8
  accumulators up to 128 elements, halves beyond), for the prompts' attention pairs.

numba is imported here only: the modules importing this one do it when they first need it,
so commands that never simulate do not pay numba's import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE: below it a block of 8 accumulators, above it halves
UNROLL = 8  # numpy's accumulators per block
AXES = 4  # mixed table axes: decodes, prompt tokens, decode KV tokens, prompt pairs
NO_WRAPPERS: dict[str, Any] = {"no_cpython_wrapper": True, "no_cfunc_wrapper": True}
STACK_DEPTH = 64  # halves pending at once in numpy_sum: one per halving, at most log2(n) < 63


def internal(fn: Callable[..., Any]) -> Any:
    """``njit`` for a function only compiled code calls: no Python or C entry point is built,
    which saves about a third of the first compile."""
    return njit(cache=True, **NO_WRAPPERS)(fn)


@internal
def cell(axis: np.ndarray, x: float) -> int:
    """``bisect_right(axis, x) − 1`` clipped to a cell: 0 … len − 2."""
    lo, hi = 0, axis.size
    while lo < hi:
        mid = (lo + hi) // 2
        if x < axis[mid]:
            hi = mid
        else:
            lo = mid + 1
    return min(max(lo - 1, 0), axis.size - 2)


@internal
def _fraction(axis: np.ndarray, i: int, x: float) -> float:
    return min(max((x - axis[i]) / (axis[i + 1] - axis[i]), 0.0), 1.0)


@internal
def _locate(axis: np.ndarray, x: float) -> tuple[int, float]:
    """The cell holding x and x's place in it (0 … 1)."""
    i = cell(axis, x)
    return i, _fraction(axis, i, x)


@internal
def decode_row_s(kv_axis: np.ndarray, row: np.ndarray, kv_tokens: float) -> float:
    """A decode-only step at ``kv_tokens`` (linear between grid points, clamped at the ends)."""
    i, f = _locate(kv_axis, kv_tokens)
    return row[i] + f * (row[i + 1] - row[i])


@njit(cache=True)
def decode_run_s(kv_axis: np.ndarray, row: np.ndarray, kv_tokens: float) -> float:
    """``numpy.interp(kv_tokens, kv_axis, row)`` for one finite value."""
    last = kv_axis.size - 1
    if kv_tokens > kv_axis[last]:
        return row[last]
    if kv_tokens < kv_axis[0]:
        return row[0]
    j = cell(kv_axis, kv_tokens)
    if kv_tokens >= kv_axis[j + 1]:  # x on the last grid point
        return row[j + 1]
    if kv_axis[j] == kv_tokens:
        return row[j]
    slope = (row[j + 1] - row[j]) / (kv_axis[j + 1] - kv_axis[j])
    return slope * (kv_tokens - kv_axis[j]) + row[j]


@njit(cache=True)
def mixed_s(
    kv_axis: np.ndarray,
    decode_values: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    values: np.ndarray,
    decodes: int,
    prompt_tokens: float,
    kv_tokens: float,
    pairs: float,
    prompts: int,
) -> float:
    """One step's time: decode-only from its row, else from the 4-D table of its prompt count
    (``values`` is the table flattened, prompt count first)."""
    if prompt_tokens <= 0:
        return decode_row_s(kv_axis, decode_values[decodes], kv_tokens)
    sizes = (axes[0].size, axes[1].size, axes[2].size, axes[3].size)
    strides = (sizes[1] * sizes[2] * sizes[3], sizes[2] * sizes[3], sizes[3], 1)
    levels = values.size // (sizes[0] * strides[0])
    i0, f0 = _locate(axes[0], float(decodes))
    i1, f1 = _locate(axes[1], float(prompt_tokens))
    i2, f2 = _locate(axes[2], float(kv_tokens))
    i3, f3 = _locate(axes[3], float(pairs))
    base = (min(max(prompts, 1), levels) - 1) * sizes[0] * strides[0] + i0 * strides[0] + i1 * strides[1] + i2 * strides[2] + i3
    fs = (f0, f1, f2, f3)
    total = 0.0
    for corner in range(1 << AXES):  # axis a high when bit a is set; weights multiplied from axis 0 up
        w = fs[0] if corner & 1 else 1.0 - fs[0]
        offset = strides[0] if corner & 1 else 0
        for a in range(1, AXES):
            if (corner >> a) & 1:
                w = w * fs[a]
                offset += strides[a]
            else:
                w = w * (1.0 - fs[a])
        if w != 0.0:
            total += w * values[base + offset]
    return total


@njit(cache=True)
def numpy_sum(x: np.ndarray, n: int) -> float:
    """``numpy.sum(x[:n])`` for float64, with numpy's order of additions: blocks of at most
    ``PAIRWISE_BLOCK`` summed by ``_block``, longer runs split in halves (rounded down to whole
    unrolls) added left + right. Iterative, over a stack of halves whose size is negative once
    their left part's sum is known: numba's cache crashes on recursive functions."""
    if n <= 0:
        return 0.0
    stack = np.empty((2, STACK_DEPTH), np.int64)  # start, size of each pending half
    lefts = np.empty(STACK_DEPTH)
    top = 0
    stack[0, 0], stack[1, 0] = 0, n
    result = 0.0
    while top >= 0:
        size = stack[1, top]
        if size > PAIRWISE_BLOCK:  # its left half first
            stack[0, top + 1], stack[1, top + 1] = stack[0, top], _half(size)
            top += 1
            continue
        result = _block(x, stack[0, top], size)
        top -= 1
        while top >= 0 and stack[1, top] < 0:  # a right half: add it to its left half, go up
            result = lefts[top] + result
            top -= 1
        if top >= 0:  # a left half: keep it, then the right half
            lefts[top] = result
            half = _half(stack[1, top])
            stack[0, top + 1], stack[1, top + 1] = stack[0, top] + half, stack[1, top] - half
            stack[1, top] = -stack[1, top]
            top += 1
    return result


@internal
def _half(n: int) -> int:
    half = n // 2
    return half - half % UNROLL


@internal
def _block(x: np.ndarray, s: int, n: int) -> float:
    """numpy's sum of up to ``PAIRWISE_BLOCK`` values: in order below ``UNROLL``, else eight
    running sums combined as a tree, then the remainder."""
    if n < UNROLL:
        res = -0.0
        for i in range(n):
            res += x[s + i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = x[s], x[s + 1], x[s + 2], x[s + 3], x[s + 4], x[s + 5], x[s + 6], x[s + 7]
    i = UNROLL
    while i < n - n % UNROLL:
        r0, r1, r2, r3 = r0 + x[s + i], r1 + x[s + i + 1], r2 + x[s + i + 2], r3 + x[s + i + 3]
        r4, r5, r6, r7 = r4 + x[s + i + 4], r5 + x[s + i + 5], r6 + x[s + i + 6], r7 + x[s + i + 7]
        i += UNROLL
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += x[s + i]
        i += 1
    return res
