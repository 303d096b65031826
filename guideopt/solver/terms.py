"""The objective terms: one row each, read by every model, front and explanation.

A row says which integer column of the candidates holds the term (``guideopt.units``
scales), how many of those integers make one reported unit (``objective_values`` are
reported in seconds, tok/s or $/h), whether it is maximised, how a plan's groups combine
it (``SUM`` for throughput and cost, ``WORST`` group for latencies, ``RATIO`` of two sums for
$ per million output tokens),
and which per-option metric tells options of one deployment shape apart (dominance pruning;
``None`` when every option of a shape has the same value, as the price).

Adding a term: an ``ObjectiveTerm`` value and one row here, plus its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any

import numpy as np

from guideopt.model.request import ObjectiveTerm
from guideopt.units import DECI_TOK_S_PER_TOK_S, MILLI_LOAD_PER_LOAD, MILLI_USD_PER_USD, SECONDS_PER_HOUR, TOKENS_PER_MILLION, US_PER_S


class Aggregate(str, Enum):
    SUM = "sum"  # the plan's value adds over its groups
    WORST = "worst"  # the plan's value is its worst group's
    RATIO = "ratio"  # numerator sum / denominator sum (two other rows)


@dataclass(frozen=True)
class TermRow:
    term: ObjectiveTerm
    per_unit: float  # integers of the column per reported unit
    maximise: bool
    aggregate: Aggregate
    column: str | None = None  # Candidates column (SUM, WORST)
    option_metric: Callable[[Any], np.ndarray] | None = None  # per option, smaller is better
    ratio: tuple[ObjectiveTerm, ObjectiveTerm, Fraction] | None = None  # (numerator, denominator, scale)
    depends_on: tuple[ObjectiveTerm, ...] = ()  # metrics that order options of one shape for it

    def values(self, c: Any) -> np.ndarray:
        """The term per candidate (integers; a plan of one group has exactly this value)."""
        if self.ratio is None:
            return getattr(c, str(self.column))
        num, den, scale = self.ratio
        return ratio_values(TERMS[num].values(c), TERMS[den].values(c), scale)

    def oriented(self, c: Any) -> np.ndarray:
        """Per candidate, smaller is better."""
        v = self.values(c)
        return -v if self.maximise else v


# A ratio with a zero denominator (no throughput): never preferred.
RATIO_UNDEFINED = np.iinfo(np.int64).max // 4


def ratio_values(num: np.ndarray, den: np.ndarray, scale: Fraction) -> np.ndarray:
    """ceil(scale · num / den) per candidate, in exact integer arithmetic (rounded up, so a
    reported cost per token is never understated)."""
    out = np.full(num.shape, RATIO_UNDEFINED, dtype=np.int64)
    ok = den > 0
    out[ok] = -(-(num[ok] * scale.numerator) // (den[ok] * scale.denominator))
    return out


TERMS: dict[ObjectiveTerm, TermRow] = {
    row.term: row
    for row in (
        TermRow(
            ObjectiveTerm.THROUGHPUT,
            DECI_TOK_S_PER_TOK_S,
            True,
            Aggregate.SUM,
            column="deci_tok_s",
            option_metric=lambda m: -m.output_throughput_tok_s,
        ),
        TermRow(ObjectiveTerm.LATENCY, US_PER_S, False, Aggregate.WORST, column="latency_us", option_metric=lambda m: m.batch_latency_s),
        TermRow(ObjectiveTerm.TTFT, US_PER_S, False, Aggregate.WORST, column="ttft_us", option_metric=lambda m: m.ttft_s),
        TermRow(ObjectiveTerm.TPOT, US_PER_S, False, Aggregate.WORST, column="tpot_us", option_metric=lambda m: m.tpot_s),
        TermRow(ObjectiveTerm.COST, MILLI_USD_PER_USD, False, Aggregate.SUM, column="milli_usd_per_hour"),
        # streams: requests/s (or clients) the plan serves within the SLOs; replicas share the load
        TermRow(ObjectiveTerm.RATE, MILLI_LOAD_PER_LOAD, True, Aggregate.SUM, column="milli_load"),
        # milli-dollars per million output tokens = milli-$/h ÷ (deci-tok/s ÷ 10 · 3600 s/h) · 10^6
        TermRow(
            ObjectiveTerm.USD_PER_MILLION_OUTPUT_TOKENS,
            MILLI_USD_PER_USD,
            False,
            Aggregate.RATIO,
            ratio=(
                ObjectiveTerm.COST,
                ObjectiveTerm.THROUGHPUT,
                Fraction(DECI_TOK_S_PER_TOK_S * TOKENS_PER_MILLION, int(SECONDS_PER_HOUR)),
            ),
            depends_on=(ObjectiveTerm.THROUGHPUT,),
        ),
    )
}


def metric_columns(metrics: Any, terms: set[ObjectiveTerm]) -> np.ndarray:
    """Per option, the quantities (smaller is better) that order options of one shape for
    ``terms``, in ``ObjectiveTerm`` order; a zero column when none does."""
    wanted = set(terms)
    for t in terms:
        wanted.update(TERMS[t].depends_on)
    metrics_of = [TERMS[t].option_metric for t in ObjectiveTerm if t in wanted]
    chosen = [f(metrics) for f in metrics_of if f is not None]
    return np.stack(chosen, axis=1) if chosen else np.zeros((metrics.ttft_s.shape[0], 1))


def unscale(term: ObjectiveTerm, value: int) -> float:
    """An integer objective value in its reported unit."""
    return value / TERMS[term].per_unit
