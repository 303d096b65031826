"""Stage 2 of the calibration: per-engine costs from end-to-end rows (``e2e.csv``).

Per engine (and per GPU vendor where its build differs, e.g. vLLM on ROCm: ``vllm@amd``)
eight physical terms are fitted with the device and link values of stage 1 held fixed:
a fixed CPU cost per decode step and per prefill pass, a cost per sequence and per new
token in a step, the engine's kernel speed relative to the measured kernels (memory-bound and compute-bound
work apart), its cost per
all-reduce call on the link of most of its multi-GPU rows, and (where it has multi-GPU
PCIe rows) the all-reduce bus bandwidth it achieves over PCIe.

The predictions are nearly linear in these terms (they add time per step, or scale the
kernel time), so the fit linearises them once per engine (one prediction per config and
term) and solves the small least-squares problem on log errors; a second round
re-linearises at the solution. Held-out refits (leave one source out) reuse the
linearisation and only re-solve.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from guideopt.calibration.mapping import Case
from guideopt.errors import GuideoptError
from guideopt.model.calibration import Calibration, FrameworkEfficiency
from guideopt.model.gpu import LinkClass

TERMS = (
    "decode_step_overhead_ms",
    "prefill_step_overhead_ms",
    "per_seq_step_us",
    "per_token_step_us",
    "kernel_efficiency",
    "allreduce_latency_us",
    "pcie_busbw_fraction",
    "compute_efficiency",
)
LOWER = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 0.5, 0.03, 0.3])
UPPER = np.array([20.0, 200.0, 200.0, 20.0, 1.0, 200.0, 1.0, 1.0])
# Finite-difference steps for the linearisation, in each term's unit.
STEPS = np.array([0.5, 2.0, 5.0, 0.5, -0.05, 2.0, 0.02, -0.05])
ALLREDUCE_TERM = TERMS.index("allreduce_latency_us")
PCIE_TERM = TERMS.index("pcie_busbw_fraction")
KERNEL_TERM, COMPUTE_TERM = TERMS.index("kernel_efficiency"), TERMS.index("compute_efficiency")
# Weak prior: moving a term by its scale from the hand-written prior costs as much as one
# row off by a factor e. Terms the rows barely constrain then stay near physical values
# instead of drifting to a bound; the scales are about ten times each term's typical size,
# so rows that do constrain a term move it freely (checked on synthetic rows in the tests).
PRIOR_SCALE = np.array([20.0, 100.0, 200.0, 20.0, 2.0, 200.0, 2.0, 2.0])
ROUNDS = 3
# Largest number of distinct configurations per engine in the fit (keeps a refit to a
# minute or two); taken evenly across the file, every metric of a config kept.
MAX_CONFIGS_PER_ENGINE = 250
MIN_CASES = 5


def engine_key(case: Case, vendor_of: Callable[[str], str]) -> str:
    fw = case.request["framework"]
    vendor = vendor_of(case.request["gpu"])
    return fw if vendor == "nvidia" else f"{fw}@{vendor}"


def usable_for_fit(case: Case) -> bool:
    """Closed-loop TTFTs depend on how far the benchmark's clients stay in step, a property
    of the client rather than of the engine: they fit the lockstep share (stage 3,
    ``fit_closed_loop``), not the engine terms. Rows of
    another engine that a profile only stands in for (LMDeploy TurboMind, NIM) validate the
    stand-in but do not shape it."""
    return not (case.workload == "closed_loop" and case.metric == "ttft_ms") and not case.framework_proxy


@dataclass(frozen=True)
class Linearised:
    """log prediction ≈ log p0 + J·(θ − θ0) per case (rows follow ``cases``)."""

    key: str
    cases: list[Case]
    theta0: np.ndarray
    log_p0: np.ndarray
    jac: np.ndarray
    log_measured: np.ndarray
    prior: np.ndarray | None = None  # where the weak prior pulls (default: theta0)

    def solve(self, keep: np.ndarray | None = None) -> np.ndarray:
        mask = np.ones(len(self.cases), dtype=bool) if keep is None else keep
        if mask.sum() < MIN_CASES:  # nothing left to fit: the prior, never the full-data fit
            return self.theta0 if self.prior is None else self.prior
        r0 = self.log_p0[mask] - self.log_measured[mask]
        jac = self.jac[mask]
        prior = self.prior if self.prior is not None else self.theta0

        def residuals(t):
            return np.concatenate([r0 + jac @ (t - self.theta0), (t - prior) / PRIOR_SCALE])

        return least_squares(residuals, x0=self.theta0, bounds=(LOWER, UPPER), loss="soft_l1", f_scale=0.1).x


def efficiency(theta: np.ndarray, base: FrameworkEfficiency, note: str = "", versions: Iterable[str] = ()) -> FrameworkEfficiency:
    values: dict = dict(zip(TERMS, (round(float(v), 4) for v in theta)))
    if base.allreduce_link is None:
        values["allreduce_latency_us"] = None  # no multi-GPU rows: the link's own latency stays
    if base.pcie_busbw_fraction is None:
        values["pcie_busbw_fraction"] = None  # no multi-GPU PCIe rows: the pcie link's kernel fit stays
    vers = sorted({v for v in versions if v}) or base.versions
    return base.model_copy(update={**values, "versions": vers, "fitted_from": note or base.fitted_from})


def _with_engine(catalog, cal: Calibration, key: str, fw: FrameworkEfficiency):
    return dataclasses.replace(catalog, calibration=cal.model_copy(update={"frameworks": {**cal.frameworks, key: fw}}))


def _log_predictions(catalog, configs: dict[tuple, dict], cases: list[Case]) -> np.ndarray:
    from guideopt.calibration.predictions import predict_requests

    preds = predict_requests(configs.values(), catalog)
    out = []
    for c in cases:
        p = preds[c.config_key]
        out.append(np.nan if isinstance(p, GuideoptError) or not p[c.metric] > 0 else np.log(p[c.metric]))
    return np.array(out)


def linearise(
    catalog,
    cal: Calibration,
    key: str,
    base: FrameworkEfficiency,
    cases: list[Case],
    theta0: np.ndarray,
    prior: np.ndarray,
    tick: Callable[[], None] | None = None,
) -> Linearised:
    """``tick`` (if given) is called after each of the ``1 + len(STEPS)`` prediction passes."""
    configs = {c.config_key: c.request for c in cases}

    def at(theta):
        out = _log_predictions(_with_engine(catalog, cal, key, efficiency(theta, base)), configs, cases)
        if tick is not None:
            tick()
        return out

    log_p0 = at(theta0)
    cols = []
    for i, step in enumerate(STEPS):
        t = theta0.copy()
        t[i] = np.clip(t[i] + step, LOWER[i], UPPER[i])
        if t[i] == theta0[i]:
            t[i] = theta0[i] - step
        cols.append((at(t) - log_p0) / (t[i] - theta0[i]))
    jac = np.column_stack(cols)
    ok = np.isfinite(log_p0) & np.all(np.isfinite(jac), axis=1)
    kept = [c for c, k in zip(cases, ok) if k]
    return Linearised(key, kept, theta0, log_p0[ok], jac[ok], np.log([c.measured for c in kept]), prior)


def _with_link(catalog, cal: Calibration, base: FrameworkEfficiency, cases: list[Case]) -> FrameworkEfficiency:
    """Set the link class of the engine's all-reduce latency term (the commonest among its
    multi-GPU rows) and whether its PCIe bus-bandwidth term is fitted (it has multi-GPU PCIe rows)."""
    links = Counter(catalog.gpus[c.request["gpu"]].link.value for c in cases if c.request.get("tp", 1) > 1)
    pcie = cal.links[LinkClass.PCIE.value].busbw_fraction
    update: dict = {"pcie_busbw_fraction": (base.pcie_busbw_fraction or pcie) if links[LinkClass.PCIE.value] else None}
    if not links:
        return base.model_copy(update={**update, "allreduce_link": None, "allreduce_latency_us": 1.0})
    link = links.most_common(1)[0][0]
    start = base.allreduce_latency_us if base.allreduce_link == link and base.allreduce_latency_us else cal.links[link].allreduce_latency_us
    return base.model_copy(update={**update, "allreduce_link": link, "allreduce_latency_us": start})


def _terms(fw: FrameworkEfficiency, cal: Calibration) -> np.ndarray:
    """The fitted terms as a vector (an unset PCIe fraction reads as the pcie link's)."""
    values = [getattr(fw, t) for t in TERMS]
    if values[PCIE_TERM] is None:
        values[PCIE_TERM] = cal.links[LinkClass.PCIE.value].busbw_fraction
    if values[COMPUTE_TERM] is None:
        values[COMPUTE_TERM] = values[KERNEL_TERM]
    return np.clip(np.array(values, dtype=float), LOWER, UPPER)


def select_cases(cases: list[Case]) -> list[Case]:
    configs = list(dict.fromkeys(c.config_key for c in cases))
    stride = max(1, -(-len(configs) // MAX_CONFIGS_PER_ENGINE))
    chosen = set(configs[::stride])
    return [c for c in cases if c.config_key in chosen]


def shipped_rows(cases: list[Case]) -> str:
    """The rows of the shipped data a fit came from (``fitted_from``)."""
    lines = sorted({c.line for c in cases})
    return f"e2e.csv lines {lines[0]}-{lines[-1]} ({len(lines)} rows, {len({c.config_key for c in cases})} configurations)"


def fit_engine(
    catalog,
    cal: Calibration,
    key: str,
    cases: list[Case],
    prior_cal: Calibration | None = None,
    rounds: int = ROUNDS,
    describe: Callable[[list[Case]], str] = shipped_rows,
    tick: Callable[[], None] | None = None,
) -> tuple[FrameworkEfficiency, Linearised] | None:
    """Fit one engine key on its cases, starting from ``cal`` and pulled weakly toward
    ``prior_cal`` (the hand-written priors; default ``cal``); None with too few cases.
    ``describe`` names the data in ``fitted_from``; ``tick`` hears each of the
    ``rounds x (1 + len(STEPS))`` prediction passes."""
    prior_cal = prior_cal or cal
    cases = select_cases([c for c in cases if usable_for_fit(c)])
    if len(cases) < MIN_CASES:
        return None
    base = _with_link(catalog, cal, cal.frameworks.get(key) or cal.frameworks[key.split("@")[0]], cases)
    start = _with_link(catalog, prior_cal, prior_cal.frameworks.get(key) or prior_cal.frameworks[key.split("@")[0]], cases)
    sync_ms = base.decode_step_overhead_ms
    ahead = _all_asynchronous(catalog, cases, base)
    if ahead:  # the rows' decode steps pay the asynchronous overhead: fit that one, keep the synchronous one
        base, start = _asynchronous_view(base), _asynchronous_view(start)
    prior = _terms(start, prior_cal)
    theta = _terms(base, cal)
    lin = linearise(catalog, cal, key, base, cases, theta, prior, tick)
    if len(lin.cases) < MIN_CASES:  # guideopt cannot predict the rest (does not fit, unknown ids)
        return None
    for _ in range(rounds - 1):
        theta = lin.solve()
        lin = linearise(catalog, cal, key, base, cases, theta, prior, tick)
    theta = lin.solve()
    residual = lin.log_p0 - lin.log_measured + lin.jac @ (theta - lin.theta0)
    note = f"{describe(lin.cases)}; median abs error {np.median(np.abs(np.expm1(residual))):.1%}"
    fitted = efficiency(theta, base, note, (c.framework_version for c in lin.cases))
    if ahead:
        fitted = fitted.model_copy(
            update={"async_decode_step_overhead_ms": fitted.decode_step_overhead_ms, "decode_step_overhead_ms": sync_ms}
        )
    return fitted, lin


def _all_asynchronous(catalog, cases: list[Case], base: FrameworkEfficiency) -> bool:
    """Every row is of an engine version that schedules ahead and the calibration prices those apart."""
    return base.async_decode_step_overhead_ms is not None and all(
        catalog.frameworks[c.request["framework"]].async_scheduling for c in cases
    )


def _asynchronous_view(fw: FrameworkEfficiency) -> FrameworkEfficiency:
    """``fw`` with the asynchronous decode-step overhead as its only one (what those rows pay), so the
    fit's ``decode_step_overhead_ms`` term moves it."""
    return fw.model_copy(update={"decode_step_overhead_ms": fw.async_decode_step_overhead_ms, "async_decode_step_overhead_ms": None})
