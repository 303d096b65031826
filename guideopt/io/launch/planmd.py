"""PLAN.md: the request in words, each ranked plan's groups, traffic shares and the
endpoints a router or load balancer should send requests to."""

from __future__ import annotations

from guideopt.io.launch.layout import GroupLaunch, tpot_text
from guideopt.io.render import plan_stream_text, stream_percentile
from guideopt.model.layout_names import layout_code
from guideopt.model.plan import Plan, PlanResult
from guideopt.model.request import PlanRequest

PLAN_FILE = "PLAN.md"


def _gpu_in_words(request: PlanRequest, gpu_id: str) -> str:
    allowance = request.allowance(gpu_id)
    limit = f" (up to {allowance.max})" if allowance.max is not None else ""
    price = f" at ${allowance.usd_per_hour:g}/h each" if allowance.usd_per_hour is not None else ""
    return f"{gpu_id}{limit}{price}"


def request_in_words(request: PlanRequest | None) -> str:
    """One paragraph restating the request."""
    if request is None:
        return "The request was not recorded with this plan."
    w = request.workload
    if w.is_stream:
        return _stream_in_words(request)
    batch = f"a fixed batch of {w.batch} per replica" if w.batch else "the batch chosen by the planner"
    gpus = ", ".join(_gpu_in_words(request, g) for g in request.gpus) if request.gpus else "any GPU in the catalog"
    frameworks = request.framework if isinstance(request.framework, str) else ", ".join(request.framework)
    slo = {k: v for k, v in request.slo.model_dump().items() if v is not None}
    slo_text = ", ".join(f"{k} {v:g}" for k, v in slo.items()) or "none"
    limits = f"; at most {request.parallelism.max_gpus} GPUs" if request.parallelism.max_gpus else ""
    return (
        f"Serve `{request.model}` with {w.input_len} input and {w.output_len} output tokens per request, {batch}, "
        f"for at most ${request.budget.usd_per_hour:g}/h{limits}. GPUs: {gpus}. Engines: {frameworks}. "
        f"Weights: {', '.join(d.value for d in request.precision)}. SLOs: {slo_text}. "
        f"Objective: {' > '.join(t.value for t in request.objective)}."
    )


def _stream_in_words(request: PlanRequest) -> str:
    """A request stream: its load, lengths and percentile SLOs."""
    w = request.workload
    load = f"{w.rate_rps:g} requests/s (burstiness {w.burstiness:g})" if w.rate_rps is not None else f"{w.concurrency} closed-loop clients"
    spec = w.length_spec
    if w.input_len is not None and w.output_len is not None:
        lengths = f"{w.input_len} input and {w.output_len} output tokens per request"
    elif spec is not None and spec.mix:
        lengths = f"lengths from the `{spec.mix}` mix"
    elif spec is not None and spec.file:
        lengths = f"lengths from the trace `{spec.file}`"
    else:
        lengths = "lengths from the given buckets"
    targets = request.slo.stream_targets()
    slo_text = "; ".join(f"{m} " + ", ".join(f"p{p:g} {b:g}" for p, b in t.targets.items()) for m, t in targets.items()) or "none"
    gpus = ", ".join(_gpu_in_words(request, g) for g in request.gpus) if request.gpus else "any GPU in the catalog"
    frameworks = request.framework if isinstance(request.framework, str) else ", ".join(request.framework)
    return (
        f"Serve `{request.model}` to a request stream of {load}, {lengths}, for at most ${request.budget.usd_per_hour:g}/h. "
        f"GPUs: {gpus}. Engines: {frameworks}. Weights: {', '.join(d.value for d in request.precision)}. "
        f"SLOs (percentiles, ms): {slo_text}. Objective: {' > '.join(t.value for t in request.objective)}."
    )


_TABLE_HEAD = (
    "| group | GPUs | layout | engine | dtype | batch | split | $/h | TTFT ms | TPOT ms | batch s "
    "| out tok/s | mem GB/GPU | traffic | script |"
)
# A stream's group: its engine's running cap and token budget, its percentile latencies (no batch to finish).
_STREAM_TABLE_HEAD = (
    "| group | GPUs | layout | engine | dtype | running cap | token budget | $/h | P{q} TTFT ms | P{q} TPOT ms "
    "| out tok/s | mem GB/GPU | traffic | script |"
)
_BATCH_SECONDS_CELL = 10  # the static batch's "batch s" cell, which a stream's row leaves out


def _group_row(launch: GroupLaunch, share: float, stream: bool = False) -> str:
    g = launch.group
    m = g.metrics
    cells = [
        launch.index,
        f"{g.num_gpus} x {g.gpu}",
        f"{g.replicas} x ({layout_code(g.tp, g.pp, g.attention_dp, g.moe_ep)})",
        g.framework,
        g.dtype,
        g.batch,
        g.split,
        f"{g.usd_per_hour:.2f}",
        f"{m.ttft_ms:.0f}",
        "n/a" if m.tpot_ms is None else f"{m.tpot_ms:.1f}",
        f"{m.batch_latency_s:.2f}",
        f"{m.output_throughput_tok_s:,.0f}",
        f"{g.memory.total_per_gpu_gb:.1f} of {g.memory.gpu_memory_gb:.0f}",
        f"{share:.0%}",
        f"`{launch.script_name}`",
    ]
    if stream:
        del cells[_BATCH_SECONDS_CELL]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def traffic_shares(plan: Plan) -> list[float]:
    """Each group's share of requests, in proportion to its predicted output throughput."""
    total = sum(g.metrics.output_throughput_tok_s for g in plan.groups)
    if total <= 0:
        return [1.0 / len(plan.groups)] * len(plan.groups)
    return [g.metrics.output_throughput_tok_s / total for g in plan.groups]


def _traffic_text(launches: list[GroupLaunch], shares: list[float]) -> str:
    parts = []
    for launch, share in zip(launches, shares):
        ports = [r.port for r in launch.replicas]
        where = f"ports {ports[0]}-{ports[-1]}" if len(ports) > 1 else f"port {ports[0]}" if ports else "no launchable replica"
        parts.append(
            f"{share:.0%} to group {launch.index} ({launch.group.replicas} replica(s), {share / launch.group.replicas:.1%} each, {where})"
        )
    return "Traffic: send " + "; ".join(parts) + "."


def endpoint_lines(launches: list[GroupLaunch], shares: list[float]) -> list[str]:
    """One line per replica: the node that serves it, its port, health path and weight."""
    lines = []
    for launch, share in zip(launches, shares):
        health = launch.framework.launch.health_path or "(TCP port check)"
        for r in launch.replicas:
            weight = share / launch.group.replicas
            lines.append(
                f"- group {launch.index} replica {r.index}: `http://<group{launch.index}-node{r.nodes[0]}>:{r.port}` "
                f"(health `{health}`, weight {weight:.1%})"
            )
    return lines


def _disagg_section(plan: Plan, launches: list[GroupLaunch], lines: list[str]) -> str:
    from guideopt.io.launch.dynamo import manifest_name
    from guideopt.io.launch.router import disagg_lines

    lines += [
        _group_row(launch, 1.0, plan.stream is not None).replace(f"| {launch.index} |", f"| {launch.index} ({launch.group.role}) |", 1)
        for launch in launches
    ]
    lines += ["", *disagg_lines(plan, launches, manifest_name(plan, launches[0].group.framework))]
    for launch in launches:
        if launch.blocker:
            lines.append(f"\n**Group {launch.index} cannot be launched as planned:** {launch.blocker}.")
        lines += [f"\nGroup {launch.index} note: {note}." for note in launch.notes]
    return "\n".join(lines)


def plan_section(plan: Plan, launches: list[GroupLaunch]) -> str:
    """The Markdown section of one ranked plan."""
    m = plan.metrics
    shares = traffic_shares(plan)
    stream = plan.stream is not None
    head = _STREAM_TABLE_HEAD.format(q=stream_percentile(plan)) if stream else _TABLE_HEAD
    predicted = (
        f"Predicted for the request stream: {plan_stream_text(plan)}."
        if stream
        else f"Predicted: {m.output_throughput_tok_s:,.0f} output tok/s in all; TTFT {m.ttft_ms:.0f} ms, "
        f"TPOT {tpot_text(m.tpot_ms)}, batch latency {m.batch_latency_s:.2f} s (worst group, per replica)."
    )
    lines = [f"## Rank {plan.rank}: {plan.num_gpus} GPUs, ${plan.usd_per_hour:.2f}/h", "", predicted, "", head]
    lines.append("|" + "---|" * head.count(" | ") + "---|")
    if plan.kv_transfer is not None and any(g.role for g in plan.groups):
        return _disagg_section(plan, launches, lines)
    lines += [_group_row(launch, share, stream) for launch, share in zip(launches, shares)]
    lines += ["", _traffic_text(launches, shares), "", "Endpoints for a router or load balancer (node N = the host started with `NODE=N`):"]
    lines += endpoint_lines(launches, shares)
    for launch in launches:
        if launch.blocker:
            lines.append(f"\n**Group {launch.index} cannot be launched as planned:** {launch.blocker}.")
        lines += [f"\nGroup {launch.index} note: {note}." for note in launch.notes]
        lines.append(f"\nGroup {launch.index} on Kubernetes: `kubectl apply -f {launch.manifest_name}`.")
    return "\n".join(lines)


CAVEAT = (
    "All figures are predictions of guideopt's calibrated roofline model for a static batch "
    "(B requests of the given lengths submitted together), not measurements; expect errors of tens of percent "
    "(see docs/accuracy.md) and check with a benchmark on the real engine before committing. "
    "Each script names the engine version its command line was written for; flags may differ in other versions."
)


STREAM_CAVEAT = (
    "All figures are predictions of guideopt's calibrated model of continuous batching under the request stream "
    "(analytic percentiles, checked by the discrete-event simulator where the plan says so), not measurements; expect "
    "errors of tens of percent (see docs/serving-model.md) and check with a benchmark on the real engine before committing. "
    "Each script names the engine version its command line was written for; flags may differ in other versions."
)


def plan_markdown(result: PlanResult, launches: list[list[GroupLaunch]], request: PlanRequest | None = None) -> str:
    title = f"# Deployment plan for `{request.model}`" if request else "# Deployment plan"
    lines = [
        title,
        "",
        request_in_words(request),
        "",
        f"Solver status: {result.status}; objective {' > '.join(result.objective)}; "
        f"{len(result.plans)} ranked plan(s), rank 1 is the best. Start a plan's groups with their scripts "
        "(`MODEL=/path/to/weights ./launch-….sh` to load local weights; multi-node groups take the node number as $1), "
        "or apply their Kubernetes manifests.",
        "",
    ]
    for plan, plan_launches_ in zip(result.plans, launches):
        lines += [plan_section(plan, plan_launches_), ""]
    stream = request is not None and request.workload.is_stream
    lines += ["## Caveats", "", STREAM_CAVEAT if stream else CAVEAT, ""]
    return "\n".join(lines)
