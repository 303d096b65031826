"""``guideopt capacity`` with MoE layouts (``--attention-dp``, ``--moe-tp``, ``--moe-ep``):
DeepSeek-R1 (FP8 checkpoint, MLA) on H200 as TP8 and as DEP8 (attention DP 8, experts EP 8),
checked against the option table and the stream model of the same option."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from guideopt.analyses.capacity import Capacity, CapacityRequest, capacity, replica_throughput_req_s
from guideopt.catalog import Catalog
from guideopt.cli import main
from guideopt.costs.engine_defaults import token_budget
from guideopt.costs.lengths import fixed_lengths
from guideopt.costs.tables import OptionSpace, OptionTable, build_option_table
from guideopt.model.dtype import Dtype
from guideopt.model.workload import POISSON_CV, PercentileTargets
from guideopt.solver.stream_options import effective_caps, stream_options
from guideopt.solver.stream_rates import slo_rates
from guideopt.units import BYTES_PER_GB

R1 = "deepseek-ai/DeepSeek-R1"
H200 = "h200-sxm"
LLAMA = "meta-llama/Llama-3.1-8B"
IN, OUT = 1024, 1024
DEP8 = {"tp": 1, "attention_dp": 8, "moe_ep": 8}
TPOT_MS = 50.0


def cap(catalog: Catalog, **kw) -> Capacity:
    with warnings.catch_warnings():  # R1's MTP-layer caveat
        warnings.simplefilter("ignore")
        return capacity(CapacityRequest(model=R1, gpu=H200, input_len=IN, output_len=OUT, **kw), catalog)


def option_table(catalog: Catalog, tp: int, dp: int, ep: int) -> OptionTable:
    """The one row of this layout, built directly (per attention-DP rank)."""
    fw, gpu = catalog.framework("vllm"), catalog.gpu(H200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = catalog.model(R1)
    space = OptionSpace(
        gpus=[gpu],
        frameworks=[fw],
        dtypes=[Dtype.FP8],
        tp=[tp],
        pp=[1],
        batch=[1],
        input_len=IN,
        output_len=OUT,
        split=[token_budget(fw, gpu.memory_bytes, requested=None, longest_prompt=IN)],
        allow_waves=True,
        allow_multi_node_tp=True,
        attention_dp=[dp],
        moe_ep=[ep],
    )
    table = build_option_table(arch, space, catalog.calibration)
    assert len(table) == 1 and (int(table.dp[0]), int(table.ep[0])) == (dp, ep)
    return table


def test_dep8_and_tp8_both_use_eight_gpus(catalog: Catalog) -> None:
    tp8, dep8 = cap(catalog, tp=8).as_dict(), cap(catalog, **DEP8).as_dict()
    assert tp8["gpus_per_replica"] == dep8["gpus_per_replica"] == 8
    assert (dep8["attention_dp"], dep8["moe_tp"], dep8["moe_ep"]) == (8, 1, 8)
    assert (tp8["attention_dp"], tp8["moe_tp"], tp8["moe_ep"]) == (1, 8, 1)


def test_dep8_max_batch_is_eight_ranks_of_the_option_table(catalog: Catalog) -> None:
    dep8, table = cap(catalog, **DEP8), option_table(catalog, 1, 8, 8)
    rank_batch = int(table.running_cap[0])  # requests of IN+OUT tokens one rank's KV pool holds
    assert rank_batch > 0
    assert dep8.memory.weights_gb == pytest.approx(float(table.memory.weights_bytes[0]) / BYTES_PER_GB)  # the fp8 checkpoint
    assert dep8.kv_cache_tokens == int(table.memory.kv_tokens[0])
    assert dep8.max_batch == 8 * rank_batch
    assert dep8.as_dict()["max_batch_per_rank"] == rank_batch
    tp8, tp8_table = cap(catalog, tp=8), option_table(catalog, 8, 1, 1)
    assert tp8.max_batch == int(tp8_table.running_cap[0])  # one rank: the replica


def test_dep8_kv_per_rank_pays_for_replicated_attention(catalog: Catalog) -> None:
    tp8, dep8 = cap(catalog, tp=8), cap(catalog, **DEP8)
    t_tp8, t_dep8 = option_table(catalog, 8, 1, 1), option_table(catalog, 1, 8, 8)
    # MLA's latent cache is not split by TP: a token costs every GPU of a TP8 group the same as a DEP rank.
    assert float(t_tp8.memory.kv_bytes_per_token[0]) == pytest.approx(float(t_dep8.memory.kv_bytes_per_token[0]))
    # Attention weights sit on every DEP rank (experts are split over 8 GPUs either way) ...
    extra_weights_gb = dep8.memory.weights_gb - tp8.memory.weights_gb
    assert extra_weights_gb > 5.0
    # ... and come out of that rank's KV pool, so a rank holds fewer tokens than the TP8 group ...
    assert tp8.memory.kv_pool_gb - dep8.memory.kv_pool_gb == pytest.approx(extra_weights_gb, abs=1.5)
    assert dep8.kv_cache_tokens < tp8.kv_cache_tokens
    # ... but each of the 8 ranks has its own pool: the replica holds far more requests.
    assert dep8.max_batch > 4 * tp8.max_batch


def rank_slo_rate(catalog: Catalog, table: OptionTable) -> float:
    lengths = fixed_lengths(IN, OUT)
    caps = effective_caps(table, np.array([float(catalog.framework("vllm").max_num_seqs)]), lengths)
    opts = stream_options(table, caps, catalog.calibration)
    targets = {"tpot_ms": PercentileTargets(targets={90.0: TPOT_MS})}
    return float(slo_rates(table.arch, opts, lengths, targets, POISSON_CV)[0])


def test_rate_sizing_with_dep_counts_every_rank_of_a_replica(catalog: Catalog) -> None:
    rank_rate = rank_slo_rate(catalog, option_table(catalog, 1, 8, 8))
    assert rank_rate > 0
    rate = 2.5 * 8 * rank_rate  # needs 3 DEP8 replicas; 20 if a replica served one rank's rate
    dep8 = cap(catalog, **DEP8, rate=rate, tpot_ms=TPOT_MS)
    assert dep8.replicas == math.ceil(rate / (8 * rank_rate)) == 3
    assert replica_throughput_req_s(dep8, catalog) == pytest.approx(8 * rank_rate)
    assert dep8.num_gpus == 3 * 8
    assert dep8.usd_per_hour == pytest.approx(24 * catalog.gpu(H200).usd_per_hour, abs=1e-3)
    assert dep8.metrics is not None and dep8.metrics.tpot_ms <= TPOT_MS
    assert dep8.metrics.output_throughput_tok_s == pytest.approx(rate * OUT)
    assert dep8.concurrency_per_replica is not None and dep8.concurrency_per_replica % 8 == 0  # 8 ranks, each its share


def test_cli_json_has_the_layout() -> None:
    res = CliRunner().invoke(
        main,
        ["capacity", "--model", R1, "--gpu", H200, "--input-len", str(IN), "--output-len", str(OUT), "--tp", "1"]
        + ["--attention-dp", "8", "--moe-ep", "8", "--json"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["tp"], out["attention_dp"], out["moe_tp"], out["moe_ep"], out["gpus_per_replica"]) == (1, 8, 1, 8, 8)
    assert out["max_batch"] == 8 * out["max_batch_per_rank"]


@pytest.mark.parametrize(
    ("model", "args", "words"),
    [
        (R1, ["--tp", "8", "--moe-ep", "3"], "--moe-ep: "),
        (R1, ["--tp", "1", "--attention-dp", "3", "--moe-ep", "3"], "--moe-ep: 3 does not divide"),
        (R1, ["--tp", "8", "--moe-tp", "3", "--moe-ep", "8"], "--moe-tp: moe_tp × moe_ep must equal tp × attention_dp = 8"),
        (LLAMA, ["--attention-dp", "2"], "--attention-dp: meta-llama/Llama-3.1-8B has no experts"),
        (LLAMA, ["--tp", "2", "--moe-ep", "2"], "--moe-ep: meta-llama/Llama-3.1-8B has no experts"),
        (R1, ["--framework", "fastgen", "--dtype", "bf16", "--tp", "1", "--attention-dp", "8", "--moe-ep", "8"], "no expert parallelism"),
        (R1, ["--framework", "trtllm-1.2", "--tp", "2", "--attention-dp", "4", "--moe-ep", "8"], "attention DP with one GPU per rank"),
        (R1, ["--attention-dp", "0"], "--attention-dp"),
    ],
    ids=["ep-3-tp8", "ep-3-experts", "moe-tp-3", "dense-dp", "dense-ep", "engine-no-ep", "engine-dp-tp", "dp-0"],
)
def test_cli_bad_layouts_are_one_line_exit_1(model: str, args: list[str], words: str) -> None:
    res = CliRunner().invoke(main, ["capacity", "--model", model, "--gpu", H200, "--input-len", "512", "--output-len", "128", *args])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and words in errors[0], res.stderr
    assert res.stdout == ""
