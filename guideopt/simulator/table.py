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
``costs.step.mixed_step_s`` (stated tolerance there). The interpolation itself is compiled
(``interp.py``, numba): the simulator's kernel calls it once per step, and ``step_s`` here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from guideopt.costs.hardware import HardwareArrays
from guideopt.costs.metrics import first_token_path_s
from guideopt.costs.step import StepConfig, mixed_step_s
from guideopt.model.llm import ModelArch

DECODE_KV_POINTS = 48  # geometric points of the decode-KV axis (2-D decode table)
MIXED_POINTS = (14, 14, 16, 12)  # points per axis of the 4-D mixed table (decodes, prompt tokens, decode KV, pairs)
EXACT_SMALL_COUNTS = 8  # decode/prompt counts 0..8 are grid points (step time bends most at small batches)


def _axis(top: float, points: int, *, exact_small: int = 0) -> np.ndarray:
    top = max(float(top), 1.0)
    geo = np.geomspace(1.0, top, points) if top > 1 else np.ones(1)
    small = np.arange(0, min(exact_small, top) + 1, dtype=float)
    return np.unique(np.concatenate([[0.0], small, np.round(geo) if exact_small else geo, [top]]))


# What ``interp.mixed_s`` and the simulator's kernel take: the decode KV axis, the decode rows,
# the four mixed axes and the mixed values flattened (prompt count first).
KernelTable = tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class StepTable:
    decode_kv_axis: np.ndarray
    decode_values: np.ndarray  # [decodes, kv]
    axes: tuple[np.ndarray, ...]  # mixed: decodes, prompt tokens, decode KV, prompt pairs
    values: np.ndarray  # [prompts in the step − 1, *axes]
    first_token_s: float = 0.0  # the server's path to a request's first token, outside the steps (costs.metrics)
    _kernel: KernelTable = field(init=False, repr=False, compare=False)

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
        first = float(np.max(first_token_path_s(arch, hw)))  # one option's (equal across the table's rows)
        return cls(kv_axis, dec.reshape(dd.shape), axes, values, first)

    def decode_s(self, decodes: int, kv_tokens: np.ndarray) -> np.ndarray:
        """Vectorised over KV totals, at a fixed decode count (a run of pure decode steps)."""
        return np.interp(kv_tokens, self.decode_kv_axis, self.decode_values[decodes])

    def step_s(self, decodes: int, prompt_tokens: float, kv_tokens: float, pairs: float, prompts: int = 1) -> float:
        """One step (scalar): decode-only steps from their decode count's row, steps with prompt
        tokens from the 4-D table of their prompt count (at most PP)."""
        from guideopt.simulator.interp import mixed_s  # numba: imported when first needed

        return float(mixed_s(*self._kernel, int(decodes), float(prompt_tokens), float(kv_tokens), float(pairs), int(prompts)))

    def kernel_arrays(self) -> KernelTable:
        """The table as ``interp.mixed_s`` and the simulator's kernel take it."""
        return self._kernel

    def __post_init__(self) -> None:
        contiguous = np.ascontiguousarray
        d, p, s, q = (contiguous(a, dtype=float) for a in self.axes)
        self._kernel = (
            contiguous(self.decode_kv_axis, dtype=float),
            contiguous(self.decode_values, dtype=float),
            (d, p, s, q),
            contiguous(self.values, dtype=float).ravel(),
        )
