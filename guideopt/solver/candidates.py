"""One candidate builder for the single-type model, the mixed-type model and the Pareto fronts.

A *replica kind* is what one replica can be: a row of the option table (one GPU type,
TP×PP, engine, precision, batch, split) or a cross-type pipeline row (two GPU types). A
*candidate* is a replica kind deployed as n replicas: a group of a plan. Every column is an
integer in the scale of ``guideopt.units`` (prices rounded up, throughput rounded down, so
that a plan the models accept truly meets a budget or a throughput floor).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from guideopt.costs.tables import OptionTable
from guideopt.units import DECI_TOK_S_PER_TOK_S, MILLI_USD_PER_USD, ROUNDING_EPS, US_PER_S

# Safety cap on replicas of one kind when neither budget nor inventory bounds it.
MAX_REPLICAS_PER_OPTION = 4096


def milli_usd(usd_per_hour: np.ndarray) -> np.ndarray:
    """A replica's price in milli-dollars per hour, rounded up (at least 1)."""
    return np.maximum(np.ceil(usd_per_hour * MILLI_USD_PER_USD - ROUNDING_EPS), 1).astype(np.int64)


def micro_seconds(seconds: np.ndarray) -> np.ndarray:
    return np.round(seconds * US_PER_S).astype(np.int64)


@dataclass
class ReplicaKinds:
    """Per replica kind: what one replica uses and delivers."""

    ref: np.ndarray  # row of the option table (source 0) or of the pipeline table (source 1)
    source: np.ndarray
    shape: np.ndarray  # deployment shape id (top-k plans differ in shapes)
    gpu_idx: np.ndarray
    gpus: np.ndarray  # GPUs of gpu_idx per replica
    gpu_idx2: np.ndarray  # second GPU type of a pipeline (-1: none)
    gpus2: np.ndarray
    milli_usd_per_hour: np.ndarray
    tok_s: np.ndarray  # output tokens/s of one replica (float)
    ttft_us: np.ndarray
    tpot_us: np.ndarray
    latency_us: np.ndarray
    milli_load: np.ndarray  # streams: thousandths of the load (req/s or clients) one replica serves within the SLOs
    slo_us: np.ndarray  # streams: (kinds, stream SLO bounds) percentile values, µs; (n, 0) offline

    def __len__(self) -> int:
        return int(self.ref.shape[0])

    def take(self, idx: np.ndarray) -> ReplicaKinds:
        return ReplicaKinds(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def gpus_on(self, gpu: int) -> np.ndarray:
        """GPUs of type ``gpu`` one replica uses."""
        return np.where(self.gpu_idx == gpu, self.gpus, 0) + np.where(self.gpu_idx2 == gpu, self.gpus2, 0)


def kinds_from_options(table: OptionTable, shape: np.ndarray) -> ReplicaKinds:
    n = len(table)
    gpus = table.gpus_per_replica.astype(np.int64)
    m = table.metrics
    return ReplicaKinds(
        ref=np.arange(n),
        source=np.zeros(n, dtype=np.int64),
        shape=shape,
        gpu_idx=table.gpu_idx.astype(np.int64),
        gpus=gpus,
        gpu_idx2=np.full(n, -1, dtype=np.int64),
        gpus2=np.zeros(n, dtype=np.int64),
        milli_usd_per_hour=milli_usd(table.usd_per_hour_per_gpu * gpus),
        tok_s=m.output_throughput_tok_s,
        ttft_us=micro_seconds(m.ttft_s),
        tpot_us=micro_seconds(m.tpot_s),
        latency_us=micro_seconds(m.batch_latency_s),
        milli_load=np.zeros(n, dtype=np.int64),
        slo_us=np.zeros((n, 0), dtype=np.int64),
    )


def kinds_from_pipelines(pt, shape: np.ndarray) -> ReplicaKinds:
    n = len(pt)
    m = pt.metrics
    return ReplicaKinds(
        ref=np.arange(n),
        source=np.ones(n, dtype=np.int64),
        shape=shape,
        gpu_idx=pt.gpu_a.astype(np.int64),
        gpus=pt.tp_a.astype(np.int64),
        gpu_idx2=pt.gpu_b.astype(np.int64),
        gpus2=pt.tp_b.astype(np.int64),
        milli_usd_per_hour=milli_usd(pt.usd_per_replica),
        tok_s=m.output_throughput_tok_s,
        ttft_us=micro_seconds(m.ttft_s),
        tpot_us=micro_seconds(m.tpot_s),
        latency_us=micro_seconds(m.batch_latency_s),
        milli_load=np.zeros(n, dtype=np.int64),
        slo_us=np.zeros((n, 0), dtype=np.int64),
    )


def concat_kinds(a: ReplicaKinds, b: ReplicaKinds) -> ReplicaKinds:
    return ReplicaKinds(**{f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in fields(a)})


@dataclass
class Candidates:
    """(replica kind, replica count) pairs: one group each."""

    option: np.ndarray  # index into the ReplicaKinds
    replicas: np.ndarray
    milli_usd_per_hour: np.ndarray  # all replicas
    gpus: np.ndarray  # GPUs of gpu_idx, all replicas
    gpu_idx: np.ndarray
    gpus2: np.ndarray  # GPUs of gpu_idx2 (pipelines), all replicas
    gpu_idx2: np.ndarray
    deci_tok_s: np.ndarray  # output tokens/s of all replicas, in tenths, rounded down once
    ttft_us: np.ndarray
    tpot_us: np.ndarray
    latency_us: np.ndarray
    shape: np.ndarray
    source: np.ndarray
    ref: np.ndarray
    milli_load: np.ndarray  # streams: thousandths of the load all replicas serve within the SLOs
    slo_us: np.ndarray  # streams: per stream SLO bound, the group's percentile at its operating point

    def __len__(self) -> int:
        return int(self.option.shape[0])

    def take(self, idx: np.ndarray) -> Candidates:
        return Candidates(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @property
    def num_gpus(self) -> np.ndarray:
        return self.gpus + self.gpus2

    def gpus_on(self, gpu: int) -> np.ndarray:
        return np.where(self.gpu_idx == gpu, self.gpus, 0) + np.where(self.gpu_idx2 == gpu, self.gpus2, 0)


def deci_tok_s(tok_s_per_replica: np.ndarray, replicas: np.ndarray) -> np.ndarray:
    """Tenths of the output tokens/s ``replicas`` of a kind serve, rounded down once."""
    return np.floor(tok_s_per_replica * replicas * DECI_TOK_S_PER_TOK_S + ROUNDING_EPS).astype(np.int64)


def expand(k: ReplicaKinds, option: np.ndarray, replicas: np.ndarray) -> Candidates:
    """Candidates for ``replicas[i]`` replicas of kind ``option[i]``."""
    return Candidates(
        option=option,
        replicas=replicas,
        milli_usd_per_hour=k.milli_usd_per_hour[option] * replicas,
        gpus=k.gpus[option] * replicas,
        gpu_idx=k.gpu_idx[option],
        gpus2=k.gpus2[option] * replicas,
        gpu_idx2=k.gpu_idx2[option],
        deci_tok_s=deci_tok_s(k.tok_s[option], replicas),
        ttft_us=k.ttft_us[option],
        tpot_us=k.tpot_us[option],
        latency_us=k.latency_us[option],
        shape=k.shape[option],
        source=k.source[option],
        ref=k.ref[option],
        milli_load=k.milli_load[option] * replicas,
        slo_us=k.slo_us[option],
    )


def fewest_and_most(k: ReplicaKinds, lo: np.ndarray, hi: np.ndarray) -> Candidates:
    """Per kind, its most and (when different) its fewest replicas: all a single-group plan
    needs, since only throughput and cost depend on the count and both grow with it."""
    n = len(k)
    option = np.concatenate([np.arange(n), np.arange(n)[lo != hi]])
    return expand(k, option, np.concatenate([hi, lo[lo != hi]]))


def concat_candidates(a: Candidates, b: Candidates) -> Candidates:
    return Candidates(**{f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in fields(a)})


def fewest_spares_and_most(k: ReplicaKinds, lo: np.ndarray, hi: np.ndarray, spares: int) -> Candidates:
    """``fewest_and_most`` plus up to ``spares`` counts above the fewest (below the most): where
    the simulator finds the fewest replicas of an option too few, the next counts are still
    candidates."""
    base = fewest_and_most(k, lo, hi)
    extra = [np.nonzero(lo + j < hi)[0] for j in range(1, spares + 1)]
    counts = [lo[e] + j for j, e in enumerate(extra, start=1)]
    if not any(e.size for e in extra):
        return base
    more = expand(k, np.concatenate(extra), np.concatenate(counts))
    return concat_candidates(base, more)


def every_count(k: ReplicaKinds, lo: np.ndarray, hi: np.ndarray) -> Candidates:
    """Per kind, every replica count from ``lo`` to ``hi``."""
    counts = np.maximum(hi - lo + 1, 0)
    option = np.repeat(np.arange(len(k)), counts)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return expand(k, option, starts + np.arange(option.size))


def type_use(k: ReplicaKinds | Candidates) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row, (GPU type, its GPUs) of the first and of the second type it uses (type −1:
    none): ``k.gpus_on(t)`` for every t at once, since t is one of the two or gets 0."""
    first = k.gpus + np.where(k.gpu_idx2 == k.gpu_idx, k.gpus2, 0)
    second = k.gpus2 + np.where(k.gpu_idx == k.gpu_idx2, k.gpus, 0)
    return [(k.gpu_idx, first), (k.gpu_idx2, second)]
