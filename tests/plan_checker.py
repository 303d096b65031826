"""An independent checker of plans against the request they answer.

It reads only the plan's contract JSON (``PlanResult.model_dump()`` or ``solve --json``),
the request and the catalog; it never imports ``guideopt.solver``, so a solver bug cannot
hide behind shared code. ``check_plan`` returns human-readable violations (empty: valid).

Tolerances follow the solver's documented integer resolution (milli-dollars per hour,
microseconds, tenths of a token per second) and the 4-decimal rounding of $/h in the JSON.
"""

from __future__ import annotations

from typing import Any

from guideopt.catalog import Catalog
from guideopt.model.request import PlanRequest

USD_TOL = 2e-3  # $/h: milli-dollar model resolution + 4-decimal rounding per group
MS_TOL = 1e-3  # ms: the model compares times in whole microseconds
S_TOL = 1e-6
TOK_TOL = 0.1  # tok/s: the model compares throughput in tenths of a token per second
MEM_TOL_GB = 1e-6
REL = 1e-6

LATENCY_KEYS = ("ttft_ms", "tpot_ms", "batch_latency_s")
THROUGHPUT_KEYS = ("decode_throughput_tok_s", "output_throughput_tok_s")


def _close(a: float, b: float, atol: float) -> bool:
    return abs(a - b) <= atol + REL * max(abs(a), abs(b))


def gpu_price(request: PlanRequest, catalog: Catalog, gpu_id: str) -> float:
    """$/h of one GPU: the file's override if any, else the catalog's price."""
    value = (request.gpus or {}).get(gpu_id)
    override = getattr(value, "usd_per_hour", None)
    return float(override) if override is not None else float(catalog.gpus[gpu_id].usd_per_hour)


def gpu_limit(request: PlanRequest, gpu_id: str) -> int | None:
    """How many GPUs of this type may be used (None: no limit)."""
    value = (request.gpus or {}).get(gpu_id)
    if isinstance(value, int):
        return value
    return getattr(value, "max", None)


def allowed_frameworks(request: PlanRequest, catalog: Catalog) -> set[str]:
    fw = request.framework
    if fw == "any":
        return set(catalog.frameworks)
    return {fw} if isinstance(fw, str) else set(fw)


def check_plan(plan_json: dict[str, Any], request: PlanRequest, catalog: Catalog) -> list[str]:
    """Violations of ``request`` by one plan (a ``plans[i]`` entry of the contract JSON)."""
    bad: list[str] = []
    rank = plan_json.get("rank", "?")

    def fail(msg: str) -> None:
        bad.append(f"plan {rank}: {msg}")

    groups = plan_json.get("groups") or []
    if not groups:
        return [f"plan {rank}: no groups"]
    if not request.heterogeneous and len({g["gpu"] for g in groups}) > 1:
        fail(f"mixes GPU types {sorted({g['gpu'] for g in groups})} but heterogeneous is false")

    # ---- GPU counts and cost, recomputed from the layout and the prices
    total_gpus = 0
    total_usd = 0.0
    counts: dict[str, int] = {}
    for g in groups:
        # A replica whose pipeline spans GPU types ("mixed") lists its stages: GPUs per stage = tp.
        parts = (
            [(st["gpu"], int(g["replicas"]) * int(st["tp"])) for st in g["stages"]]
            if g.get("stages")
            else [(g["gpu"], int(g["replicas"]) * int(g["tp"]) * int(g.get("attention_dp", 1)) * int(g["pp"]))]
        )
        n = sum(k for _, k in parts)
        if g.get("num_gpus") is not None and int(g["num_gpus"]) != n:
            fail(f"group {g['gpu']}: num_gpus {g['num_gpus']} != replicas·(GPUs per replica) = {n}")
        if int(g["replicas"]) < 1:
            fail(f"group {g['gpu']}: {g['replicas']} replicas")
        if g.get("stages"):
            if g["gpu"] != "mixed":
                fail(f"group {g['gpu']}: a group with stages must have gpu 'mixed'")
            layers = sum(int(st["layers"]) for st in g["stages"])
            arch = catalog.model(request.model)
            if layers != arch.num_layers:
                fail(f"mixed group: stages cover {layers} layers, the model has {arch.num_layers}")
            for st in g["stages"]:
                if int(st["tp"]) not in request.parallelism.tp:
                    fail(f"mixed group: stage tp {st['tp']} not in the allowed {request.parallelism.tp}")
                if float(st["memory"]["total_per_gpu_gb"]) > catalog.gpus[st["gpu"]].memory_gb + MEM_TOL_GB:
                    fail(f"mixed group: stage on {st['gpu']} needs {st['memory']['total_per_gpu_gb']:.1f} GB per GPU")
        group_usd = 0.0
        for gpu_id, k in parts:
            if gpu_id not in catalog.gpus:
                fail(f"unknown GPU {gpu_id!r}")
                continue
            total_gpus += k
            counts[gpu_id] = counts.get(gpu_id, 0) + k
            group_usd += k * gpu_price(request, catalog, gpu_id)
        total_usd += group_usd
        if g.get("usd_per_hour") is not None and not _close(float(g["usd_per_hour"]), group_usd, USD_TOL):
            fail(f"group {g['gpu']}: usd_per_hour {g['usd_per_hour']} != {n} GPUs × price = {group_usd:.4f}")
    if int(plan_json["num_gpus"]) != total_gpus:
        fail(f"num_gpus {plan_json['num_gpus']} != Σ replicas·tp·attention_dp·pp = {total_gpus}")
    if {k: int(v) for k, v in plan_json.get("gpu_counts", {}).items()} != counts:
        fail(f"gpu_counts {plan_json.get('gpu_counts')} != {counts}")
    if not _close(float(plan_json["usd_per_hour"]), total_usd, USD_TOL):
        fail(f"usd_per_hour {plan_json['usd_per_hour']} != recomputed {total_usd:.4f}")
    if total_usd > request.budget.usd_per_hour + USD_TOL:
        fail(f"costs ${total_usd:.4f}/h, over the budget ${request.budget.usd_per_hour}/h")

    # ---- inventory and GPU caps
    if request.gpus is not None:
        for gpu_id, n in counts.items():
            if gpu_id not in request.gpus:
                fail(f"uses {gpu_id}, which is not among the allowed GPUs {sorted(request.gpus)}")
            limit = gpu_limit(request, gpu_id)
            if limit is not None and n > limit:
                fail(f"uses {n} × {gpu_id}, over the inventory of {limit}")
    if request.parallelism.max_gpus is not None and total_gpus > request.parallelism.max_gpus:
        fail(f"uses {total_gpus} GPUs, over max_gpus {request.parallelism.max_gpus}")

    # ---- per-group layout, engine, precision, memory
    frameworks = allowed_frameworks(request, catalog)
    precisions = {p.value for p in request.precision}
    for g in groups:
        where = f"group {g['gpu']} tp{g['tp']}·pp{g['pp']}"
        if not g.get("stages") and int(g["tp"]) not in request.parallelism.tp:
            fail(f"{where}: tp {g['tp']} not in the allowed {request.parallelism.tp}")
        if int(g["pp"]) not in request.parallelism.pp:
            fail(f"{where}: pp {g['pp']} not in the allowed {request.parallelism.pp}")
        _check_moe_layout(g, request, catalog, where, fail)
        if g["framework"] not in frameworks:
            fail(f"{where}: framework {g['framework']!r} not in the allowed {sorted(frameworks)}")
        if g["dtype"] not in precisions:
            fail(f"{where}: precision {g['dtype']!r} not in the allowed {sorted(precisions)}")
        if request.kv_dtype is not None and g.get("kv_dtype") not in (None, request.kv_dtype.value):
            fail(f"{where}: kv_dtype {g.get('kv_dtype')!r} but the request asks for {request.kv_dtype.value!r}")
        if request.workload.batch is not None and int(g["batch"]) != request.workload.batch:
            fail(f"{where}: batch {g['batch']} but the workload fixes it at {request.workload.batch}")
        if int(g["batch"]) < 1 or int(g["split"]) < 1:
            fail(f"{where}: batch {g['batch']} / split {g['split']} must be >= 1")
        mem = g["memory"]
        if g["gpu"] in catalog.gpus and not _close(float(mem["gpu_memory_gb"]), catalog.gpus[g["gpu"]].memory_gb, 1e-3):
            fail(f"{where}: gpu_memory_gb {mem['gpu_memory_gb']} != the catalog's {catalog.gpus[g['gpu']].memory_gb}")
        if float(mem["total_per_gpu_gb"]) > float(mem["gpu_memory_gb"]) + MEM_TOL_GB:
            fail(f"{where}: needs {mem['total_per_gpu_gb']} GB per GPU, more than its {mem['gpu_memory_gb']} GB")
        parts = sum(float(mem[k]) for k in ("weights_gb", "kv_cache_gb", "activation_gb", "overhead_gb"))
        if parts > float(mem["total_per_gpu_gb"]) + 1e-3 + REL * parts:
            fail(f"{where}: memory parts add up to {parts:.3f} GB, above total_per_gpu_gb {mem['total_per_gpu_gb']}")
        for key in LATENCY_KEYS + THROUGHPUT_KEYS:
            if not float(g["metrics"][key]) > 0:
                fail(f"{where}: metric {key} = {g['metrics'][key]} is not positive")

    # ---- SLOs: latencies per group (per replica), throughput for the whole deployment
    slo = request.slo
    if request.workload.is_stream:
        return bad + _stream_violations(plan_json, request)
    for g in groups:
        m = g["metrics"]
        where = f"group {g['gpu']} tp{g['tp']}·pp{g['pp']}"
        if slo.ttft_ms is not None and float(m["ttft_ms"]) > slo.ttft_ms + MS_TOL:
            fail(f"{where}: ttft {m['ttft_ms']:.3f} ms over the SLO {slo.ttft_ms} ms")
        if slo.tpot_ms is not None and float(m["tpot_ms"]) > slo.tpot_ms + MS_TOL:
            fail(f"{where}: tpot {m['tpot_ms']:.3f} ms over the SLO {slo.tpot_ms} ms")
        if slo.batch_latency_s is not None and float(m["batch_latency_s"]) > slo.batch_latency_s + S_TOL:
            fail(f"{where}: batch latency {m['batch_latency_s']:.6f} s over the SLO {slo.batch_latency_s} s")
    plan_metrics = plan_json["metrics"]
    total_tput = sum(float(g["metrics"]["output_throughput_tok_s"]) for g in groups)
    if not _close(float(plan_metrics["output_throughput_tok_s"]), total_tput, TOK_TOL):
        fail(f"plan output throughput {plan_metrics['output_throughput_tok_s']} != Σ groups {total_tput}")
    for key in LATENCY_KEYS:
        worst = max(float(g["metrics"][key]) for g in groups)
        if not _close(float(plan_metrics[key]), worst, 1e-9):
            fail(f"plan {key} {plan_metrics[key]} != worst group {worst}")
    if slo.min_output_throughput_tok_s is not None and total_tput < slo.min_output_throughput_tok_s - TOK_TOL:
        fail(f"output throughput {total_tput:.1f} tok/s under the SLO {slo.min_output_throughput_tok_s} tok/s")
    return bad


def _stream_violations(plan_json: dict[str, Any], request: PlanRequest) -> list[str]:
    """A stream plan: every percentile bound holds (analytic, and simulated when it passed) and
    the groups serve the load."""
    bad: list[str] = []
    served = 0.0
    for g in plan_json["groups"]:
        st = g.get("stream") or {}
        where = f"group {g['gpu']} tp{g['tp']}·pp{g['pp']}"
        served += g["replicas"] * float(st.get("sustainable_rate_rps_per_replica", 0.0))
        for metric, targets in request.slo.stream_targets().items():
            for pct, bound in targets.targets.items():
                value = st["analytic"][metric][f"p{pct:g}"]
                if value > bound + MS_TOL:
                    bad.append(f"{where}: analytic {metric} p{pct:g} {value:.1f} ms over the SLO {bound} ms")
                if (plan_json.get("stream") or {}).get("simulated_meets_slo") and "simulated" in st:
                    sim = st["simulated"]
                    # every run met it, and the next run is predicted to: the worst run and the bound are within it
                    for label, value in (
                        ("simulated", sim[metric][f"p{pct:g}"]),
                        ("worst simulated run", sim.get("worst_run", {}).get(metric, {}).get(f"p{pct:g}")),
                        ("next run's bound", sim.get("next_run_bound", {}).get(metric, {}).get(f"p{pct:g}")),
                    ):
                        if value is not None and value > bound + MS_TOL:
                            bad.append(f"{where}: {label} {metric} p{pct:g} {value:.1f} ms over {bound} ms, yet marked as meeting it")
    rate = request.workload.rate_rps
    if rate is not None and served < rate * (1 - 1e-6):
        bad.append(f"the groups serve {served:.3f} req/s within the SLOs, under the rate {rate}")
    return bad


def check_result(result_json: dict[str, Any], request: PlanRequest, catalog: Catalog) -> list[str]:
    """Violations by every plan of a result, plus the result-level rules (top, ranks, distinct plans)."""
    bad: list[str] = []
    plans = result_json.get("plans") or []
    if result_json.get("status") not in ("optimal", "feasible"):
        bad.append(f"status {result_json.get('status')!r} with plans")
    if not plans:
        bad.append("no plans")
    if len(plans) > request.top:
        bad.append(f"{len(plans)} plans, more than top = {request.top}")
    if [p.get("rank") for p in plans] != list(range(1, len(plans) + 1)):
        bad.append(f"ranks {[p.get('rank') for p in plans]} are not 1..{len(plans)}")
    if list(result_json.get("objective", [])) != [t.value for t in request.objective]:
        bad.append(f"objective {result_json.get('objective')} != the request's {[t.value for t in request.objective]}")
    shapes = [tuple(sorted(_group_shape(g) for g in p["groups"])) for p in plans]
    if len(set(shapes)) != len(shapes):
        bad.append(f"plans repeat a deployment shape: {shapes}")
    for p in plans:
        bad.extend(check_plan(p, request, catalog))
    return bad


def _check_moe_layout(g: dict, request, catalog, where: str, fail) -> None:
    """The layout row (CONTRACT "Layouts"): dense groups keep attention_dp = moe_ep = 1; MoE
    groups have moe_tp × moe_ep = tp × attention_dp, EP dividing the routed experts, and
    sizes among the allowed ones."""
    dp, ep = int(g.get("attention_dp", 1)), int(g.get("moe_ep", 1))
    moe = catalog.model(request.model).moe
    if moe is None:
        if (dp, ep) != (1, 1):
            fail(f"{where}: a dense model with attention_dp {dp}, moe_ep {ep}")
        return
    if int(g["moe_tp"]) * ep != int(g["tp"]) * dp:
        fail(f"{where}: moe_tp {g['moe_tp']} × moe_ep {ep} != tp × attention_dp = {int(g['tp']) * dp}")
    if moe.num_experts % ep:
        fail(f"{where}: moe_ep {ep} does not divide {moe.num_experts} experts")
    par = request.parallelism
    if par.ep is not None and ep not in par.ep:
        fail(f"{where}: moe_ep {ep} not in the allowed {par.ep}")
    if par.attention_dp is not None and dp not in par.attention_dp:
        fail(f"{where}: attention_dp {dp} not in the allowed {par.attention_dp}")


def _group_shape(g: dict) -> tuple:
    """A group's deployment shape: fp16 and bf16 are one precision class; a cross-type
    pipeline is identified by its stages (GPU type and TP of each)."""
    dtype = "fp16" if g["dtype"] in ("fp16", "bf16") else g["dtype"]
    stages = tuple((st["gpu"], st["tp"]) for st in g["stages"]) if g.get("stages") else ()
    return (g["gpu"], g["framework"], dtype, g["tp"], g.get("attention_dp", 1), g.get("moe_ep", 1), g["pp"], stages)
