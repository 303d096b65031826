"""Parallel layout of a measured row: GPUs, TP / PP, attention data parallelism and MoE TP / EP.

The request contract (``PredictRequest``): one replica runs on tp × attention_dp × pp GPUs; in
each pipeline stage the MoE layers split the same tp × attention_dp GPUs as moe_tp × moe_ep;
``num_gpus`` is replicas × tp × attention_dp × pp. ``attention_dp``, ``moe_tp`` and ``moe_ep``
enter a request only when they differ from their defaults (1, tp × attention_dp, 1).

Most sources state num_gpus / tp / pp in their columns. The aiconfigurator silicon sample
(``AIC_SOURCE``) states its layout in the notes, in two encodings that need decoding; see
``aic_layout``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from guideopt.calibration.cases import Skip
from guideopt.calibration.measurements import Measurement

AIC_SOURCE = "NVIDIA aiconfigurator silicon_sample"
_DP_OR_EP_WORDS = re.compile(r"attention[- _]dp|expert[- ]parallel|\bEP\b", re.IGNORECASE)


@dataclass(frozen=True)
class Layout:
    num_gpus: int  # all GPUs: replicas × tp × attention_dp × pp
    tp: int  # attention tensor parallelism
    pp: int = 1
    attention_dp: int = 1  # attention data-parallel ranks per stage
    moe_tp: int | None = None  # None: the default tp × attention_dp (pure TP experts)
    moe_ep: int = 1

    @property
    def stage_gpus(self) -> int:
        return self.tp * self.attention_dp

    def request_fields(self) -> dict[str, int]:
        out = {"num_gpus": self.num_gpus, "tp": self.tp, "pp": self.pp}
        if self.attention_dp != 1:
            out["attention_dp"] = self.attention_dp
        if self.moe_tp is not None and self.moe_tp != self.stage_gpus:
            out["moe_tp"] = self.moe_tp
        if self.moe_ep != 1:
            out["moe_ep"] = self.moe_ep
        return out


def checked(lay: Layout) -> Layout | Skip:
    """The layout if it keeps the contract's invariants, else a Skip naming the fields."""
    moe_tp = lay.stage_gpus if lay.moe_tp is None else lay.moe_tp
    if moe_tp * lay.moe_ep != lay.stage_gpus:
        return Skip(
            "MoE layout breaks moe_tp × moe_ep = tp × attention_dp",
            f"tp={lay.tp} attention_dp={lay.attention_dp} moe_tp={moe_tp} moe_ep={lay.moe_ep}",
        )
    if lay.num_gpus % (lay.stage_gpus * lay.pp):
        return Skip("inconsistent parallel layout", f"num_gpus={lay.num_gpus} tp={lay.tp} attention_dp={lay.attention_dp} pp={lay.pp}")
    return lay


def integer_or_none(x: float | None) -> int | None:
    return None if x is None else int(round(x))


def layout(m: Measurement) -> Layout | Skip:
    """The row's layout: aiconfigurator's decoded, else num_gpus / tp / pp from the columns.

    tp defaults to num_gpus / pp (or 1), pp to 1, num_gpus to tp·pp.
    """
    if m.source.startswith(AIC_SOURCE):
        return aic_layout(m)
    if m.num_gpus is None and _DP_OR_EP_WORDS.search(m.notes):
        return Skip("attention-DP / expert-parallel layout not recorded", "num_gpus empty")
    pp = integer_or_none(m.pp) or 1
    num_gpus = integer_or_none(m.num_gpus)
    tp = integer_or_none(m.tp) or (max(num_gpus // pp, 1) if num_gpus else 1)
    return checked(Layout(num_gpus=num_gpus or tp * pp, tp=tp, pp=pp))


# --- aiconfigurator silicon sample ------------------------------------------------------
#
# Columns of systems/silicon_sample.csv (aggregated rows): tp_size, pp_size, attention_dp_size,
# moe_tp_size, moe_ep_size and batch_size, with the client concurrency in silicon_data_source
# ("silicon_concurrency=N"); e2e.csv copies them into the notes ("attention_dp_size=…",
# "moe_tp=… moe_ep=…", "aic batch_size=…", "client concurrency=…", "row id …") and tp_size into tp.
#
# Concurrency. ``client concurrency`` is the benchmark client's, over the whole aggregated
# worker (all its attention-DP ranks); aiconfigurator's batch_size is per attention-DP rank:
# batch_size × attention_dp_size = concurrency on 3,575 of the 3,619 aggregated raw rows (3,225 of
# the 3,241 in e2e.csv). E.g.
# 2026_03_25_deepseek_r1_b200_sxm_trtllm_fp4_agg_8192x1024_c256_tp8_0_ep8_0_974: concurrency 256,
# attention_dp_size 8, batch_size 32. A request's ``concurrency`` is the whole deployment's
# clients, so it takes the client concurrency (256), not the per-rank batch.
# The 16 exceptions in e2e.csv are skipped: 13 Dynamo 4000/1000 TRT-LLM runs whose batch_size is
# concurrency / tp with no attention DP recorded (c224 tp4 batch 56; c320 tp2 batch 160: a DP
# layout the export lost, or a per-GPU batch), 2 with no concurrency recorded (TTFT 29-40 s: the
# batch of 28 that stands in is not the load) and one DP row whose batch equals its concurrency.
#
# Encodings. The sample merges three exports of one run database; the same run appears in more
# than one with identical TTFT / TPOT, which shows how they encode one engine configuration
# "tp X, ep Y" (X GPUs per stage, experts over Y of them):
# - native (ids "…_tpX_0_epY_0_n", the gap-analysis ids "…_tpX_epnone_n"): aiconfigurator's own
#   meaning, tp_size × attention_dp_size = moe_tp_size × moe_ep_size = GPUs per stage:
#   TEP8 = (tp 8, dp 1, moe_tp 1, moe_ep 8); DEP8 = (tp 1, dp 8, moe_tp 1, moe_ep 8).
# - converted (ids "…_tpX_epY_n" and the db-dump ids "…_cfgN"): moe_tp_size = X,
#   moe_ep_size = Y and tp_size × attention_dp_size = X·Y:
#   (tp X·Y, dp 1, X, Y) for TP attention; (tp 1, dp X·Y, X, Y) for TRT-LLM attention DP;
#   (tp X, dp Y, 1, X·Y) for vLLM's expert parallel.
#   Evidence (raw rows whose TTFT / TPOT equal a native row's of the same model, system, engine,
#   lengths and concurrency): 51 read (64, 1, 8, 8) where the native export has (8, 1, 1, 8):
#   DeepSeek-R1 on B200 / H200 with SGLang and TRT-LLM, Qwen3.5 on H200 with SGLang; 52 read
#   (16, 1, 4, 4) for (4, 1, 1, 4); 21 DEP rows (1, 64, 8, 8) for (1, 8, 1, 8), e.g.
#   dsr1_b200_trtllm_fp4_agg_8192x1024_c128_cfg191, TPOT 27.057 ms with batch 2 = 128 / 64, is
#   the native c128 DEP8 run, batch 16 = 128 / 8; 31 vLLM rows (4, 4, 1, 16) for (4, 1, 1, 4),
#   Kimi-K2.5 on B200, whose native form has TP attention and no DP. A 64-GPU "TP 64" of an
#   8-GPU B200 node, as read natively, is not what ran.

_ID_ENGINE = re.compile(r"_tp(\d+)_ep(\d+)_\d+$")  # converted export: the engine's tp X / ep Y
_ID_DB_DUMP = re.compile(r"_cfg\d+$")  # converted export without the flags in the id
_ROW_ID = re.compile(r"row id (\S+)")
# Beyond one 8-GPU HGX node the sample has only GB200 DeepSeek-R1 runs "tpN_ep1", N in {12, 20,
# 24, 28, 32, 36, 40, 48, 52, 64, 72}, recorded as pure TP-N: DeepSeek's 128 attention heads and
# 2048-wide experts (16 fp8 blocks of 128) admit no such split for most N, so the engine split
# attention and experts another way (DP / EP) that the export does not record.
MAX_RECORDED_TP = 8


def _note_int(m: Measurement, key: str) -> int | None:
    found = re.search(rf"\b{key}=(\d+)", m.notes)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class _Recorded:
    tp: int
    dp: int
    moe_tp: int
    moe_ep: int

    def __str__(self) -> str:
        return f"tp={self.tp} attention_dp_size={self.dp} moe_tp={self.moe_tp} moe_ep={self.moe_ep}"


def _converted(x: int, y: int) -> tuple[tuple[int, int, int, int], ...]:
    return ((x * y, 1, x, y), (1, x * y, x, y), (x, y, 1, x * y))


def _native(x: int, y: int) -> tuple[tuple[int, int, int, int], ...]:
    return ((x, 1, x // y, y), (1, x, x // y, y))


def _engine(rec: _Recorded, row_id: str) -> tuple[int, int] | Skip | None:
    """The engine's (tp X, ep Y) of a converted-export row; None for a native row."""
    fields = (rec.tp, rec.dp, rec.moe_tp, rec.moe_ep)
    by_id = _ID_ENGINE.search(row_id)
    if by_id:
        x, y = int(by_id.group(1)), int(by_id.group(2))
        if x % y == 0 and fields in _converted(x, y) + _native(x, y):
            return x, y
        return Skip("layout fields disagree with the row id", f"{row_id[-24:]}: {rec}")
    if _ID_DB_DUMP.search(row_id):
        for x, y in ((rec.moe_tp, rec.moe_ep), (rec.tp, rec.dp)):  # the converted encodings' X and Y
            if x > 1 and y > 1 and x % y == 0 and fields in _converted(x, y):
                return x, y
    return None


def _per_rank_batch_skip(m: Measurement, dp: int) -> Skip | None:
    concurrency = _note_int(m, "client concurrency")
    batch = _note_int(m, "aic batch_size")
    if "concurrency not recorded" in m.notes:
        return Skip("client concurrency not recorded", f"aic batch_size={batch} stands in for an unknown load")
    if concurrency is not None and batch is not None and batch * dp != concurrency:
        return Skip(
            "per-rank batch and client concurrency disagree",
            f"client concurrency={concurrency} aic batch_size={batch} attention_dp_size={dp}",
        )
    return None


def aic_layout(m: Measurement) -> Layout | Skip:
    """One aggregated worker of an aiconfigurator silicon-sample row, decoded (see above)."""
    tp, pp = integer_or_none(m.tp) or 1, integer_or_none(m.pp) or 1
    dp = _note_int(m, "attention_dp_size") or 1
    moe_tp, moe_ep = _note_int(m, "moe_tp"), _note_int(m, "moe_ep") or 1
    rec = _Recorded(tp, dp, tp * dp if moe_tp is None else moe_tp, moe_ep)  # no moe_tp: the default
    off = _per_rank_batch_skip(m, rec.dp)
    if off is not None:
        return off
    row_id = _ROW_ID.search(m.notes)
    engine = _engine(rec, row_id.group(1) if row_id else "")
    if isinstance(engine, Skip):
        return engine
    if engine is not None:
        x, y = engine
        data_parallel = rec.tp == 1 and rec.dp > 1  # TRT-LLM attention DP; vLLM's expert parallel keeps TP attention
        lay = Layout(num_gpus=x * pp, tp=1 if data_parallel else x, pp=pp, attention_dp=x if data_parallel else 1, moe_tp=x // y, moe_ep=y)
    elif rec.dp == 1 and rec.moe_tp == 1 and rec.moe_ep == 1:
        lay = Layout(num_gpus=tp * pp, tp=tp, pp=pp)  # dense model, or no MoE split recorded: the TP default
    else:
        lay = Layout(num_gpus=tp * rec.dp * pp, tp=tp, pp=pp, attention_dp=rec.dp, moe_tp=rec.moe_tp, moe_ep=rec.moe_ep)
    if lay.tp > MAX_RECORDED_TP:
        return Skip("wide TP-N layout not recoverable", f"tp={lay.tp} moe_ep={lay.moe_ep} on {m.gpu}")
    return checked(lay)
