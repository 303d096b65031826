"""``capacity`` over many cases at once (issue 24: vectorised wherever a user sweeps).

Requests alike but for their lengths (``LENGTH_FIELDS``: the cases of a sweep) form a group
priced as arrays: one option-table row per case, each at its own lengths and token budget
(``table_for_rows``), and for a load one stream search over all the cases
(``capacity_rate.py``), instead of a table and a search per case. Each case gets the result
or the error it gets alone; where cases fail, the first in request order is raised, as when
they run one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from guideopt.analyses.capacity_rate import size_for_rate
from guideopt.analyses.capacity_request import LENGTH_FIELDS, Capacity, CapacityRequest, split_batch, sub_batch_sizes
from guideopt.analyses.predict import checked_layout
from guideopt.catalog import Catalog
from guideopt.costs.engine_defaults import token_budget
from guideopt.costs.memory import tokens_per_sequence
from guideopt.costs.rows import memory_breakdown
from guideopt.costs.tables import OptionSpace, OptionTable, option_rows, table_for_rows, tp_is_valid
from guideopt.errors import GuideoptError, InvalidRequestError
from guideopt.model.dtype import Dtype
from guideopt.model.framework import Framework
from guideopt.model.limits import MAX_LISTED_SUB_BATCHES
from guideopt.model.llm import ModelArch
from guideopt.units import BYTES_PER_GB

TP_CHOICES_FOR_HINT = (1, 2, 4, 8)

Outcome = Capacity | GuideoptError


def capacities(reqs: Sequence[CapacityRequest], cat: Catalog) -> list[Capacity]:
    """Each request's capacity, the groups of cases priced together; the first error in request order raises."""
    outcomes: dict[int, Outcome] = {}
    groups: dict[tuple, list[tuple[int, CapacityRequest]]] = {}
    for i, req in enumerate(reqs):
        try:
            resolved = _resolved(req, cat)
        except GuideoptError as exc:
            outcomes[i] = exc
            continue
        groups.setdefault(_group_key(resolved), []).append((i, resolved))
    for members in groups.values():
        outcomes.update(zip([i for i, _ in members], _group([r for _, r in members], cat)))
    results: list[Capacity] = []
    for i in range(len(reqs)):
        outcome = outcomes[i]
        if isinstance(outcome, GuideoptError):
            raise outcome
        results.append(outcome)
    return results


def _resolved(req: CapacityRequest, cat: Catalog) -> CapacityRequest:
    """A quantized checkpoint runs in its own precision unless a dtype is asked."""
    arch = cat.model(req.model)
    if "dtype" not in req.model_fields_set and arch.checkpoint_dtype:
        return req.model_copy(update={"dtype": Dtype(arch.checkpoint_dtype)})
    return req


def _group_key(req: CapacityRequest) -> tuple:
    return tuple(sorted(req.model_dump(exclude=set(LENGTH_FIELDS)).items()))


def _layout_fields(req: CapacityRequest) -> dict:
    """The request's configuration as ``predict``'s request fields (its checks and refusals apply)."""
    keys = ("model", "gpu", "pp", "framework", "dtype", "kv_dtype", "input_len", "output_len", "attention_dp", "moe_tp", "moe_ep")
    fields = {k: getattr(req, k) for k in keys}
    return {"tp": req.resolved_tp, **{k: v for k, v in fields.items() if v is not None}}


def _group(reqs: list[CapacityRequest], cat: Catalog) -> list[Outcome]:
    """Outcomes of cases alike but for their lengths (the layout's refusals do not depend on them)."""
    try:
        checked_layout(_layout_fields(reqs[0]), cat)  # engine, TP, PP and expert-split refusals, as predict's
    except GuideoptError as exc:
        return [exc] * len(reqs)
    fw = cat.framework(reqs[0].framework)
    refused = {j: err for j, r in enumerate(reqs) if (err := _split_refusal(r, fw)) is not None}
    todo = [j for j in range(len(reqs)) if j not in refused]
    priced = dict(zip(todo, _priced([reqs[j] for j in todo], cat) if todo else []))
    return [refused[j] if j in refused else priced[j] for j in range(len(reqs))]


def _split_refusal(req: CapacityRequest, fw: Framework) -> InvalidRequestError | None:
    if fw.chunked_prefill or req.split is None or req.split >= req.input_len:
        return None
    return InvalidRequestError(
        f"{req.split} tokens is shorter than the {req.input_len}-token prompt and {fw.id} does not chunk prefill (use split >= input_len)",
        field="split",
    )


def _priced(reqs: list[CapacityRequest], cat: Catalog) -> list[Outcome]:
    first = reqs[0]
    arch, fw = cat.model(first.model), cat.framework(first.framework)
    table = case_table(reqs, cat, first.resolved_tp)
    if len(table) == 0:  # every refusal above has its own message; this is the backstop
        exc = InvalidRequestError(
            f"{fw.id} cannot serve this layout on {first.gpu} (`guideopt predict` with the same flags says why)", field="tp"
        )
        return [exc] * len(reqs)
    outs = [_case_capacity(r, table, j, arch, fw) for j, r in enumerate(reqs)]
    short = [j for j, out in enumerate(outs) if not out.fits and not out.reason]
    for j, tp in zip(short, fitting_tps([reqs[j] for j in short], cat)):
        _explain_shortfall(outs[j], table, j, tp)
    outcomes: list[Outcome] = list(outs)
    rated = [j for j, out in enumerate(outs) if out.fits and out.request.rate is not None]
    if rated:
        sized = size_for_rate([outs[j] for j in rated], table.take(np.array(rated)), cat, first.running_cap or fw.max_num_seqs)
        for j, outcome in zip(rated, sized):
            outcomes[j] = outcome
    return outcomes


def case_table(reqs: Sequence[CapacityRequest], cat: Catalog, tp: int) -> OptionTable:
    """One row per request (requests alike but for their lengths) at ``tp``: the configuration
    at each one's lengths and token budget; empty where the engine cannot form that layout."""
    first = reqs[0]
    arch, fw, gpu = cat.model(first.model), cat.framework(first.framework), cat.gpu(first.gpu)
    splits = [token_budget(fw, gpu.memory_bytes, requested=r.split, longest_prompt=r.input_len) for r in reqs]
    space = OptionSpace(
        gpus=[gpu],
        frameworks=[fw],
        dtypes=[first.dtype],
        tp=[tp],
        pp=[first.pp],
        batch=[1],
        input_len=first.input_len,
        output_len=first.output_len,
        kv_dtype=first.kv_dtype,
        split=[splits[0]],
        allow_waves=True,
        allow_multi_node_tp=True,  # as predict: TP wider than a node runs over the slower link
        attention_dp=[first.attention_dp],
        moe_ep=[first.moe_ep],
    )
    rows = option_rows(arch, space)
    if rows["tp"].size:  # the configuration's one row, once per case
        assert rows["tp"].size == 1, "a capacity space is one configuration"
        rows = {k: np.repeat(v, len(reqs)) for k, v in rows.items()}
        rows["split"] = np.array(splits)
        rows["input_len"] = np.array([r.input_len for r in reqs])
        rows["output_len"] = np.array([r.output_len for r in reqs])
    return table_for_rows(arch, space, cat.calibration, rows)


def _case_capacity(req: CapacityRequest, table: OptionTable, j: int, arch: ModelArch, fw: Framework) -> Capacity:
    """Row ``j``'s memory capacity, longest sequence and sub-batches."""
    kv_tokens = int(table.memory.kv_tokens[j])  # a rank's
    seq = req.input_len + req.output_len
    rank_batch = int(kv_tokens // float(tokens_per_sequence(seq, fw.kv_block_tokens)))
    max_batch = req.attention_dp * rank_batch  # each attention-DP rank holds its own requests' KV
    reason = ""
    if seq > arch.max_position_embeddings:
        max_batch, reason = 0, f"input+output = {seq} tokens exceeds the model's context of {arch.max_position_embeddings}"
    out = Capacity(
        request=req,
        fits=max_batch >= 1,
        kv_cache_tokens=kv_tokens,
        max_batch=max_batch,
        max_seq_len=min(kv_tokens, arch.max_position_embeddings),
        memory=memory_breakdown(table, j, running=float(max(rank_batch, 0)), seq_tokens=seq),  # per GPU: one rank's requests
        prompt_chunks=math.ceil(req.input_len / int(table.split[j])) if fw.chunked_prefill else 1,
        reason=reason,
    )
    if req.batch:
        out.sub_batch_sizes = sub_batch_sizes(req.batch, max_batch)
        if sum(out.sub_batch_sizes.values()) <= MAX_LISTED_SUB_BATCHES:
            out.sub_batches = split_batch(req.batch, max_batch)
    return out


def _explain_shortfall(out: Capacity, table: OptionTable, j: int, fitting_tp: int | None) -> None:
    mem, seq = table.memory, out.request.input_len + out.request.output_len
    need = float(mem.weights_bytes[j] + mem.activation_bytes[j] + mem.overhead_bytes[j]) + seq * float(mem.kv_bytes_per_token[j])
    out.shortfall_gb = (need - float(mem.usable_bytes[j])) / BYTES_PER_GB
    out.fitting_tp = fitting_tp
    hint = f"; tp={fitting_tp} would fit" if fitting_tp else "; no TP up to 8 fits on this GPU"
    out.reason = f"short by {out.shortfall_gb:.1f} GB per GPU{hint}"


def fitting_tps(reqs: Sequence[CapacityRequest], cat: Catalog) -> list[int | None]:
    """Per request, the smallest TP of ``TP_CHOICES_FOR_HINT`` whose KV cache holds one of its sequences (None: none)."""
    found: list[int | None] = [None] * len(reqs)
    if not reqs:
        return found
    arch, gpu = cat.model(reqs[0].model), cat.gpu(reqs[0].gpu)
    for tp in TP_CHOICES_FOR_HINT:
        todo = [j for j, f in enumerate(found) if f is None]
        valid = tp * reqs[0].attention_dp <= gpu.gpus_per_node and bool(tp_is_valid(arch, np.array([tp]))[0])
        if not (todo and valid):
            continue
        kv_tokens = case_table([reqs[j] for j in todo], cat, tp).memory.kv_tokens  # none: the engine cannot form the layout
        for k, j in enumerate(todo if kv_tokens.size else []):
            if int(kv_tokens[k]) >= reqs[j].input_len + reqs[j].output_len:
                found[j] = tp
    return found
