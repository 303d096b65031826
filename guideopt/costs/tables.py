"""Per-option tables of memory and static-batch metrics, built in one vectorised pass.

An option is one replica's configuration: (GPU type, framework, weight dtype, TP, PP,
batch, split size). ``build_option_table`` enumerates the cross product with numpy,
drops structurally impossible rows (TP must divide the heads, PP the layers; no TP group
wider than a node), and computes every metric as arrays. ``predict`` and the solver both
read these tables, so a plan's metrics are exactly what ``predict`` says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from guideopt.costs.capability import moe_layout_reason, option_reason
from guideopt.costs.hardware import HardwareArrays, hardware_arrays
from guideopt.costs.layouts import Layouts, layout_table
from guideopt.costs.memory import MemoryArrays, max_batch, memory_arrays
from guideopt.costs.metrics import StaticBatchInputs, StaticBatchMetrics, static_batch_metrics
from guideopt.costs.serving import static_wave_cap
from guideopt.model.calibration import Calibration
from guideopt.model.dtype import Dtype
from guideopt.model.framework import Framework
from guideopt.model.gpu import Gpu
from guideopt.model.llm import ModelArch


@dataclass(frozen=True)
class OptionSpace:
    """What to enumerate; every list is a set of allowed values."""

    gpus: Sequence[Gpu]
    frameworks: Sequence[Framework]
    dtypes: Sequence[Dtype]
    tp: Sequence[int]
    pp: Sequence[int]
    batch: Sequence[int]
    input_len: int
    output_len: int
    kv_dtype: Dtype | None = None  # None: same as the weights for 16-bit, else 16-bit
    split: Sequence[int] | None = None  # None: each framework's own split choices
    h2o_keep: float = 1.0
    flash_attention: bool = True
    allow_waves: bool = False  # predict: a batch larger than the KV cache runs in waves
    allow_multi_node_tp: bool = False  # predict: a TP group wider than a node talks over the slower fallback link
    # Layouts (``costs/layouts.py``): allowed attention-DP ranks per replica (``batch`` is then
    # per rank) and expert-parallel sizes of the MoE layers (None: 1 or the whole stage).
    attention_dp: Sequence[int] = (1,)
    moe_ep: Sequence[int] | None = (1,)


@dataclass
class OptionTable:
    arch: ModelArch
    space: OptionSpace
    gpu_idx: np.ndarray
    fw_idx: np.ndarray
    dtype_idx: np.ndarray
    kv_dtype_bytes: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    batch: np.ndarray  # per attention-DP rank
    split: np.ndarray
    memory: MemoryArrays  # per GPU; KV tokens and the running cap are per attention-DP rank
    metrics: StaticBatchMetrics  # latencies of a rank, throughputs of the whole replica
    running_cap: np.ndarray
    fits: np.ndarray
    usd_per_hour_per_gpu: np.ndarray
    kv_dtype_names: list[str] = field(default_factory=list)
    attention_dp: np.ndarray | None = None  # None: 1 on every row
    moe_ep: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    @property
    def dp(self) -> np.ndarray:
        return self.attention_dp if self.attention_dp is not None else np.ones_like(self.tp)

    @property
    def ep(self) -> np.ndarray:
        return self.moe_ep if self.moe_ep is not None else np.ones_like(self.tp)

    @property
    def gpus_per_replica(self) -> np.ndarray:
        return self.tp * self.dp * self.pp

    def take(self, mask: np.ndarray) -> OptionTable:
        """A sub-table of the rows where ``mask`` holds (or of the given indices)."""

        def sub(a):
            return a[mask]

        mem = MemoryArrays(*(sub(getattr(self.memory, f)) for f in MemoryArrays.__dataclass_fields__))
        met = StaticBatchMetrics(*(sub(getattr(self.metrics, f)) for f in StaticBatchMetrics.__dataclass_fields__))
        names = list(np.asarray(self.kv_dtype_names, dtype=object)[mask]) if self.kv_dtype_names else []
        return OptionTable(
            self.arch,
            self.space,
            sub(self.gpu_idx),
            sub(self.fw_idx),
            sub(self.dtype_idx),
            sub(self.kv_dtype_bytes),
            sub(self.tp),
            sub(self.pp),
            sub(self.batch),
            sub(self.split),
            mem,
            met,
            sub(self.running_cap),
            sub(self.fits),
            sub(self.usd_per_hour_per_gpu),
            names,
            None if self.attention_dp is None else sub(self.attention_dp),
            None if self.moe_ep is None else sub(self.moe_ep),
        )


def default_kv_dtype(weight: Dtype) -> Dtype:
    """KV cache precision when none is asked: the engines keep KV in 16-bit by default."""
    return weight if weight.is_float16 else Dtype.FP16


def tp_is_valid(arch: ModelArch, tp: np.ndarray) -> np.ndarray:
    """TP must split every layer kind's heads and widths evenly (``ModelArch.tp_problem``)."""
    tp = np.asarray(tp)
    sizes, inverse = np.unique(tp, return_inverse=True)
    ok = np.array([arch.tp_problem(int(t)) is None for t in sizes], dtype=bool)
    return ok[inverse].reshape(tp.shape)


def _grid(*axes: Sequence[int]) -> list[np.ndarray]:
    mesh = np.meshgrid(*[np.asarray(a, dtype=np.int64) for a in axes], indexing="ij")
    return [m.ravel() for m in mesh]


def kv_dtype_for(space: OptionSpace, weights: Dtype) -> Dtype:
    """The KV-cache precision of rows with ``weights`` weights."""
    return space.kv_dtype or default_kv_dtype(weights)


def capability_mask(space: OptionSpace, fw: Framework) -> np.ndarray:
    """[gpu, dtype] -> True where ``fw`` serves those weights (and their KV cache) on that GPU."""
    return np.array(
        [[option_reason(fw, gpu, dt, kv_dtype_for(space, dt)) is None for dt in space.dtypes] for gpu in space.gpus], dtype=bool
    ).reshape(len(space.gpus), len(space.dtypes))


def lex_ids(*columns: np.ndarray) -> np.ndarray:
    """One integer per distinct row of the columns, numbered in their lexicographic order
    (``np.unique(..., axis=0)``'s inverse, without its row sort): each column becomes its
    rank among its own values, and the ranks a mixed-radix number."""
    key = np.zeros(len(columns[0]) if columns else 0, dtype=np.int64)
    for col in columns:
        values, rank = np.unique(np.asarray(col), return_inverse=True)
        key = key * max(values.size, 1) + rank.reshape(-1)
    _, dense = np.unique(key, return_inverse=True)
    return dense.reshape(-1).astype(np.int64)


def layout_mask(space: OptionSpace, fw: Framework, gpu_idx: np.ndarray, t, d, e, p) -> np.ndarray:
    """Rows whose layout the engine runs on that GPU type: TP inside the scale-up domain (an
    NVL72 rack's NVLink reaches across trays), one replica across nodes only where the engine
    spans nodes, and expert parallelism and attention DP as the engine version has them
    (``moe_layout_reason``, asked once per distinct layout and node size)."""
    node = np.array([gpu.gpus_per_node for gpu in space.gpus])[gpu_idx]
    reach = np.array([max(gpu.gpus_per_node, gpu.scale_up_domain_gpus) for gpu in space.gpus])[gpu_idx]
    ok = (t <= reach) | space.allow_multi_node_tp
    if not fw.capabilities.pipeline_parallel:
        ok &= p == 1
    if not fw.capabilities.multi_node:
        ok &= t * d * p <= node
    moe = (d > 1) | (e > 1)
    if not moe.any():
        return ok
    ids = lex_ids(t, d, e, p, node)
    _, first = np.unique(ids, return_index=True)
    keys = np.stack([t, d, e, p, node], axis=1)[first]
    inverse = ids
    runs = np.array(
        [
            moe_layout_reason(
                fw,
                attention_dp=int(kd),
                moe_ep=int(ke),
                gpus_per_replica=int(kt * kd * kp),
                gpus_per_node=int(kn),
                tp=int(kt),
                moe_tp=int(kt * kd // ke),
            )
            is None
            for kt, kd, ke, kp, kn in keys
        ],
        dtype=bool,
    )
    return ok & runs[inverse.reshape(-1)]


def _framework_rows(arch: ModelArch, space: OptionSpace, layouts: Layouts, fw_i: int) -> dict[str, np.ndarray]:
    fw = space.frameworks[fw_i]
    splits = list(space.split) if space.split else list(fw.split_sizes)
    g, dt, li, p, b, s = _grid(range(len(space.gpus)), range(len(space.dtypes)), range(len(layouts)), space.pp, space.batch, splits)
    t, d, e = layouts.tp[li], layouts.dp[li], layouts.ep[li]
    ok = (p <= arch.num_layers) & capability_mask(space, fw)[g, dt] & layout_mask(space, fw, g, t, d, e, p)
    if not fw.chunked_prefill:
        ok &= s >= space.input_len  # a whole prompt must fit in one pass
    keep = np.nonzero(ok)[0]
    return {
        "gpu": g[keep],
        "dtype": dt[keep],
        "tp": t[keep],
        "dp": d[keep],
        "ep": e[keep],
        "pp": p[keep],
        "batch": b[keep],
        "split": s[keep],
        "fw": np.full(keep.size, fw_i),
    }


def build_option_table(arch: ModelArch, space: OptionSpace, calibration: Calibration, prices: Sequence[float] | None = None) -> OptionTable:
    return table_for_rows(arch, space, calibration, option_rows(arch, space), prices)


def option_rows(arch: ModelArch, space: OptionSpace) -> dict[str, np.ndarray]:
    """The structurally valid rows of ``space``, as columns (GPU, framework and dtype indices, layout, PP, batch, split)."""
    layouts = layout_table(arch, [t for t in space.tp if tp_is_valid(arch, np.array([t]))[0]], space.attention_dp, space.moe_ep)
    parts = [_framework_rows(arch, space, layouts, i) for i in range(len(space.frameworks))]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def table_for_rows(
    arch: ModelArch, space: OptionSpace, calibration: Calibration, rows: dict[str, np.ndarray], prices: Sequence[float] | None = None
) -> OptionTable:
    """The table of ``option_rows``' rows. Rows with ``input_len``/``output_len`` columns have
    their own lengths (cases of a sweep priced at once: ``memory_breakdown`` then needs each
    row's ``seq_tokens``); else every row has the space's."""
    n = rows["tp"].size
    inp, out = (rows["input_len"], rows["output_len"]) if "input_len" in rows else (space.input_len, space.output_len)
    kv_dtypes = [kv_dtype_for(space, dt) for dt in space.dtypes]
    w_bytes = np.array([dt.bytes for dt in space.dtypes])[rows["dtype"]]
    kv_bytes = np.array([kd.bytes for kd in kv_dtypes])[rows["dtype"]]
    hw = hardware_for_rows(space, calibration, rows["gpu"], rows["fw"], rows["dtype"])
    seq_len = inp + out
    mem = _memory_for_rows(arch, space, rows, w_bytes, kv_bytes, seq_len)
    blocks = np.array([fw.kv_block_tokens for fw in space.frameworks])[rows["fw"]]
    running_cap = max_batch(mem.kv_tokens, seq_len, blocks)
    batch = rows["batch"].astype(float)
    fits = (running_cap >= 1) & (mem.kv_pool_bytes > 0)
    if not space.allow_waves:
        fits &= running_cap >= batch
    chunked = np.array([fw.chunked_prefill for fw in space.frameworks])[rows["fw"]]
    wave_cap = running_cap
    if space.allow_waves:  # predict: a batch beyond the KV cache runs as each engine admits it
        usage = _current_usage(space, calibration, rows)
        wave_cap = static_wave_cap(running_cap, inp, out, usage)
    inputs = StaticBatchInputs(
        tp=rows["tp"].astype(float),
        pp=rows["pp"].astype(float),
        batch=batch,
        input_len=np.zeros(n) + inp,
        output_len=np.zeros(n) + out,
        split=rows["split"].astype(float),
        chunked=chunked,
        w_bytes=w_bytes,
        kv_bytes=kv_bytes,
        running_cap=np.maximum(wave_cap, 1.0),
        kv_keep=np.full(n, space.h2o_keep),
        flash=space.flash_attention,
        dp=rows["dp"].astype(float),
        ep=rows["ep"].astype(float),
    )
    metrics = replica_metrics(static_batch_metrics(arch, inputs, hw), rows["dp"])
    price_list = prices if prices is not None else [g.usd_per_hour for g in space.gpus]
    return OptionTable(
        arch=arch,
        space=space,
        gpu_idx=rows["gpu"],
        fw_idx=rows["fw"],
        dtype_idx=rows["dtype"],
        kv_dtype_bytes=kv_bytes,
        tp=rows["tp"],
        pp=rows["pp"],
        batch=rows["batch"],
        split=rows["split"],
        memory=mem,
        metrics=metrics,
        running_cap=running_cap,
        fits=fits,
        usd_per_hour_per_gpu=np.asarray(price_list, dtype=float)[rows["gpu"]],
        kv_dtype_names=[kv_dtypes[i].value for i in rows["dtype"]],
        attention_dp=rows["dp"],
        moe_ep=rows["ep"],
    )


def replica_metrics(rank: StaticBatchMetrics, dp: np.ndarray) -> StaticBatchMetrics:
    """A replica's metrics from one attention-DP rank's: its ranks run in lock step (the MoE
    layers gather every rank's tokens), so latencies are the rank's and throughputs ``dp``×."""
    if not np.any(dp > 1):
        return rank
    scale = {k: getattr(rank, k) * dp for k in StaticBatchMetrics.__dataclass_fields__ if k.endswith("_tok_s")}
    return dataclasses.replace(rank, **scale)


def _current_usage(space: OptionSpace, calibration: Calibration, rows: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, whether its engine admits by the KV a request holds now (``kv_admission``)."""
    table = np.array(
        [[calibration.admits_current_usage(fw.calibration_id, gpu.vendor.value) for fw in space.frameworks] for gpu in space.gpus],
        dtype=bool,
    ).reshape(len(space.gpus), len(space.frameworks))
    return table[rows["gpu"], rows["fw"]]


def hardware_for_rows(space: OptionSpace, calibration: Calibration, gpu_idx, fw_idx, dtype_idx) -> HardwareArrays:
    """Hardware arrays computed once per distinct (GPU, framework, dtype) and gathered per row."""
    keys = (
        np.asarray(gpu_idx) * (len(space.frameworks) * len(space.dtypes)) + np.asarray(fw_idx) * len(space.dtypes) + np.asarray(dtype_idx)
    )
    uniq, inverse = np.unique(keys, return_inverse=True)
    per_fw_dt = len(space.frameworks) * len(space.dtypes)
    gi, rem = np.divmod(uniq, per_fw_dt)
    fi, di = np.divmod(rem, len(space.dtypes))
    base = hardware_arrays([space.gpus[i] for i in gi], [space.frameworks[i] for i in fi], [space.dtypes[i] for i in di], calibration)
    return HardwareArrays(**{f: getattr(base, f)[inverse.reshape(-1)] for f in HardwareArrays.__dataclass_fields__})


def _memory_for_rows(arch, space: OptionSpace, rows, w_bytes, kv_bytes, seq_tokens) -> MemoryArrays:
    mem_bytes = np.array([g.memory_bytes for g in space.gpus])[rows["gpu"]]
    out = {f: np.zeros(rows["tp"].size) for f in MemoryArrays.__dataclass_fields__}
    for fw_i, fw in enumerate(space.frameworks):
        sel = rows["fw"] == fw_i
        part = memory_arrays(
            arch,
            fw,
            gpu_memory_bytes=mem_bytes[sel],
            tp=rows["tp"][sel],
            pp=rows["pp"][sel],
            w_bytes=w_bytes[sel],
            kv_bytes=kv_bytes[sel],
            token_budget=rows["split"][sel].astype(float),
            kv_keep=space.h2o_keep,
            seq_tokens=seq_tokens if np.ndim(seq_tokens) == 0 else seq_tokens[sel],
            dp=rows["dp"][sel].astype(float),
            ep=rows["ep"][sel].astype(float),
        )
        for f in out:
            out[f][sel] = getattr(part, f)
    return MemoryArrays(**out)


__all__ = [
    "OptionSpace",
    "OptionTable",
    "build_option_table",
    "capability_mask",
    "default_kv_dtype",
    "kv_dtype_for",
    "layout_mask",
    "lex_ids",
    "max_batch",
    "option_rows",
    "table_for_rows",
    "tp_is_valid",
]
