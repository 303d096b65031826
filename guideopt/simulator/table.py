"""The step-time function of ``costs.step`` tabulated for one configuration.

The simulator prices tens of thousands of steps; one call of the vectorised cost model
costs ~0.2 ms whatever its length, but ~1 µs per element in bulk. So the step time is
evaluated once on a grid, in one vectorised call, and interpolated (multilinear):

* decode-only steps: every decode count 0..cap exactly × a geometric grid of the decodes'
  total KV tokens (step time is piecewise linear in it, so the error is confined to the
  cells holding a roofline kink);
* steps with prompt tokens: a 4-D grid over (decodes, prompt tokens, decode KV tokens,
  prompt attention pairs), geometric axes that include 0, for each count of prompts in
  the step from 1 to PP (with pipeline parallelism the sequences in a step decide how
  many micro-batches fill the pipeline; beyond PP they no longer matter).

``tests/test_simulator.py`` checks the interpolation against direct calls of
``costs.step.mixed_step_s`` (stated tolerance there).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.step import StepConfig, mixed_step_s
from guideopt.model.llm import ModelArch

DECODE_KV_POINTS = 48  # geometric points of the decode-KV axis (2-D decode table)
MIXED_POINTS = (14, 14, 16, 12)  # points per axis of the 4-D mixed table (decodes, prompt tokens, decode KV, pairs)
MEMO_SIZE = 1 << 16  # mixed steps remembered by their arguments (cleared when full)
EXACT_SMALL_COUNTS = 8  # decode/prompt counts 0..8 are grid points (step time bends most at small batches)


def _axis(top: float, points: int, *, exact_small: int = 0) -> np.ndarray:
    top = max(float(top), 1.0)
    geo = np.geomspace(1.0, top, points) if top > 1 else np.ones(1)
    small = np.arange(0, min(exact_small, top) + 1, dtype=float)
    return np.unique(np.concatenate([[0.0], small, np.round(geo) if exact_small else geo, [top]]))


@dataclass
class StepTable:
    decode_kv_axis: np.ndarray
    decode_values: np.ndarray  # [decodes, kv]
    axes: tuple[np.ndarray, ...]  # mixed: decodes, prompt tokens, decode KV, prompt pairs
    values: np.ndarray  # [prompts in the step − 1, *axes]
    _decode_rows: list[list[float]]
    _axes_lists: tuple[list[float], ...]
    _flat: list[float]

    @classmethod
    def build(
        cls, arch: ModelArch, cfg: StepConfig, hw: HardwareArrays, *, cap: int, budget: int, max_context: int, pp: int = 1
    ) -> StepTable:
        kv_top = float(cap) * max_context
        kv_axis = _axis(kv_top, DECODE_KV_POINTS)
        d_all = np.arange(cap + 1, dtype=float)
        dd, kk = np.meshgrid(d_all, kv_axis, indexing="ij")
        dec = mixed_step_s(
            arch, cfg, hw, decodes=dd.ravel(), decode_kv_tokens=kk.ravel(), prefill_tokens=0.0, prefill_seqs=0.0, prefill_pair_count=0.0
        )
        n_d, n_p, n_s, n_q = MIXED_POINTS
        pair_top = float(budget) * (max_context + budget / 2.0)
        axes = (
            _axis(cap, n_d, exact_small=EXACT_SMALL_COUNTS),
            _axis(budget, n_p, exact_small=EXACT_SMALL_COUNTS),
            _axis(kv_top, n_s),
            _axis(pair_top, n_q),
        )
        prompts = np.arange(1, max(pp, 1) + 1, dtype=float)
        mesh = np.meshgrid(prompts, *axes, indexing="ij")
        n, d, p, s, q = (m.ravel() for m in mesh)
        mixed = mixed_step_s(arch, cfg, hw, decodes=d, decode_kv_tokens=s, prefill_tokens=p, prefill_seqs=n, prefill_pair_count=q)
        values = mixed.reshape(mesh[0].shape)
        dvals = dec.reshape(dd.shape)
        return cls(kv_axis, dvals, axes, values, dvals.tolist(), tuple(a.tolist() for a in axes), values.ravel().tolist())

    def decode_s(self, decodes: int, kv_tokens: np.ndarray) -> np.ndarray:
        """Vectorised over KV totals, at a fixed decode count (a run of pure decode steps)."""
        return np.interp(kv_tokens, self.decode_kv_axis, self.decode_values[decodes])

    def step_s(self, decodes: int, prompt_tokens: float, kv_tokens: float, pairs: float, prompts: int = 1) -> float:
        """One step (scalar, pure Python: a few µs; repeated arguments come from a memo)."""
        if prompt_tokens <= 0:
            return _interp1(self._kv_list, self._decode_rows[decodes], kv_tokens)
        key = (decodes, prompt_tokens, kv_tokens, pairs, prompts)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        base = (min(max(prompts, 1), self._prompt_levels) - 1) * self._slab
        fs = []
        for axis, stride, x in zip(self._axes_lists, self._strides, (decodes, prompt_tokens, kv_tokens, pairs)):
            i = min(max(bisect.bisect_right(axis, x) - 1, 0), len(axis) - 2)
            fs.append(min(max((x - axis[i]) / (axis[i + 1] - axis[i]), 0.0), 1.0))
            base += i * stride
        # The corner weights, products taken axis by axis (axis 0 the lowest bit of the corner).
        f0, f1, f2, f3 = fs
        g0 = 1.0 * (1.0 - f0)
        f0 = 1.0 * f0
        w = [g0 * (1.0 - f1), f0 * (1.0 - f1), g0 * f1, f0 * f1]
        w = [v * (1.0 - f2) for v in w] + [v * f2 for v in w]
        w = [v * (1.0 - f3) for v in w] + [v * f3 for v in w]
        flat = self._flat
        total = sum(v * flat[base + o] for v, o in zip(w, self._offsets) if v)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = total
        return total

    def __post_init__(self) -> None:
        self._kv_list = self.decode_kv_axis.tolist()
        sizes = [len(a) for a in self._axes_lists]
        self._strides = [int(np.prod(sizes[i + 1 :])) for i in range(len(sizes))]
        self._slab = int(np.prod(sizes))
        self._prompt_levels = int(self.values.shape[0])
        offsets = [0]
        for stride in self._strides:
            offsets = offsets + [o + stride for o in offsets]
        self._offsets = offsets
        self._memo: dict[tuple[int, float, float, float, int], float] = {}


def _interp1(xs: list[float], ys: list[float], x: float) -> float:
    i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2)
    f = min(max((x - xs[i]) / (xs[i + 1] - xs[i]), 0.0), 1.0)
    return ys[i] + f * (ys[i + 1] - ys[i])
