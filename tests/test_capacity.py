"""``guideopt capacity``: memory capacity, batch/length adjustment, sizing for a load, and the CLI.

The first tests work the numbers out by hand (GUIDE §3.3) so that a change in the memory
model shows up as a named, explainable difference rather than a moved golden value.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from guideopt import api
from guideopt.analyses.capacity import Capacity, CapacityRequest, capacity, replica_throughput_req_s, split_batch
from guideopt.catalog import Catalog
from guideopt.cli import main
from guideopt.costs.tables import tp_is_valid
from guideopt.errors import InvalidRequestError, NoFeasiblePlanError
from guideopt.units import BYTES_PER_GB, BYTES_PER_GIB
from tests.conftest import LLAMA2_7B, LLAMA2_13B, LLAMA2_70B, LLAMA3_8B, QWEN2_7B

A100 = "a100-sxm4-80gb"
MISTRAL_7B = "mistralai/Mistral-7B-v0.1"
MEMORY_KEYS = {"weights_gb", "kv_cache_gb", "activation_gb", "overhead_gb", "total_per_gpu_gb", "gpu_memory_gb"}


def cap(catalog: Catalog, model: str = LLAMA2_7B, gpu: str = A100, **kw) -> Capacity:
    kw.setdefault("input_len", 1024)
    kw.setdefault("output_len", 1024)
    return capacity(CapacityRequest(model=model, gpu=gpu, **kw), catalog)


def one_line(text: str) -> bool:
    return text.strip() != "" and "\n" not in text.strip()


# --------------------------------------------------------------------------------------
# 1-2. Hand calculations
# --------------------------------------------------------------------------------------

# Llama-2-7B (HF config.json): 32 layers, 32 query heads = 32 KV heads (MHA), head_dim 128.
LLAMA2_7B_PARAMS = 6_738_415_616
FP16_BYTES = 2
VLLM_GPU_MEMORY_UTILIZATION = 0.9
VLLM_BLOCK_TOKENS = 16
A100_80GB_BYTES = 80 * BYTES_PER_GIB


def test_hand_calculation_llama2_7b_fp16_one_a100_vllm(catalog: Catalog) -> None:
    res = cap(catalog, input_len=1024, output_len=1024)
    mem = res.memory

    # Weights: every parameter in fp16 (the embedding and LM head stay 16-bit anyway).
    weights_bytes = LLAMA2_7B_PARAMS * FP16_BYTES  # 13,476,831,232 B ~ 13.48 GB
    assert mem.weights_gb == pytest.approx(weights_bytes / BYTES_PER_GB, rel=0.01)
    assert mem.weights_gb == pytest.approx(13.48, abs=0.01)

    # KV cache per token: K and V, per layer, per KV head, per head dim, fp16.
    kv_bytes_per_token = 2 * 32 * 32 * 128 * FP16_BYTES
    assert kv_bytes_per_token == 524_288  # 0.5 MiB

    # vLLM lets itself use gpu_memory_utilization of the GPU's *total* memory.
    usable_bytes = A100_80GB_BYTES * VLLM_GPU_MEMORY_UTILIZATION
    graph_headroom_bytes = catalog.framework("vllm").cuda_graph_gib * 1024**3
    assert mem.usable_gb == pytest.approx((usable_bytes + graph_headroom_bytes) / BYTES_PER_GB, rel=1e-9)
    assert mem.gpu_memory_gb == pytest.approx(A100_80GB_BYTES / BYTES_PER_GB, rel=1e-9)

    # Activation peak (2048-token budget + logits) and framework overhead: small and positive.
    assert 0 < mem.activation_gb < 2
    assert 0 < mem.overhead_gb < 2
    activation_bytes = mem.activation_gb * BYTES_PER_GB
    overhead_bytes = mem.overhead_gb * BYTES_PER_GB

    # CUDA-graph memory (vllm.yaml cuda_graph_gib) comes out of the 10 % headroom in the
    # modelled vLLM versions (<= 0.20, frameworks.md §1.4), not out of the budget.
    graph_bytes = catalog.framework("vllm").cuda_graph_gib * 1024**3
    # The KV pool is whatever is left, cut into whole 16-token vLLM blocks.
    pool_bytes = usable_bytes - mem.weights_gb * BYTES_PER_GB - activation_bytes - (overhead_bytes - graph_bytes)
    assert mem.kv_pool_gb == pytest.approx(pool_bytes / BYTES_PER_GB, rel=1e-9)
    kv_tokens = math.floor(pool_bytes / kv_bytes_per_token / VLLM_BLOCK_TOKENS) * VLLM_BLOCK_TOKENS
    assert abs(res.kv_cache_tokens - kv_tokens) <= VLLM_BLOCK_TOKENS
    assert res.kv_cache_tokens % VLLM_BLOCK_TOKENS == 0
    # A sanity range: ~62.5 GB of pool / 0.5 MiB ~ 119k tokens.
    assert 115_000 < res.kv_cache_tokens < 122_000

    # Requests of 1024 + 1024 tokens (2048 = 128 whole blocks) that fit at once.
    seq = 1024 + 1024
    assert res.max_batch == res.kv_cache_tokens // seq
    assert res.max_batch == kv_tokens // seq
    assert res.fits

    # At batch 1 the longest sequence is bounded by the model's 4096-token context.
    assert res.max_seq_len == 4096

    # The breakdown at max_batch adds up.
    assert mem.kv_cache_gb == pytest.approx(res.max_batch * seq * kv_bytes_per_token / BYTES_PER_GB, rel=1e-9)
    total = mem.weights_gb + mem.kv_cache_gb + mem.activation_gb + mem.overhead_gb
    assert mem.total_per_gpu_gb == pytest.approx(total, rel=1e-9)
    assert mem.total_per_gpu_gb <= mem.usable_gb


def test_vllm_kv_pool_excludes_cuda_graph_memory(catalog: Catalog) -> None:
    fw = catalog.framework("vllm")
    res = cap(catalog, input_len=1024, output_len=1024)
    mem = res.memory
    # vLLM issue #11251 budget line: total x utilization - weights - non_torch - activation peak = KV cache.
    pool = (
        A100_80GB_BYTES * fw.memory_fraction
        - mem.weights_gb * BYTES_PER_GB
        - mem.activation_gb * BYTES_PER_GB
        - fw.non_torch_gib * BYTES_PER_GIB
    )
    expected = math.floor(pool / 524_288 / fw.kv_block_tokens) * fw.kv_block_tokens
    assert res.kv_cache_tokens == expected


def test_sglang_kv_pool_is_static_fraction_minus_weights(catalog: Catalog) -> None:
    fw = catalog.framework("sglang")
    res = cap(catalog, framework="sglang", input_len=1024, output_len=1024)
    # SGLang 0.5.3's own rule (server_args.py:637-676) on an 80 GiB GPU at TP 1 with 8192-token
    # chunks and cuda_graph_max_bs 256: reserved = 512 + 8192 x 1.5 + 256 x 2 + 1/8 x 1024 MiB.
    reserved_mib = 512 + 8192 * 1.5 + 256 * 2 + 1024 / 8
    assert fw.max_num_batched_tokens == 8192
    fraction = round((80 * 1024 - reserved_mib) / (80 * 1024), 3)
    pool = A100_80GB_BYTES * fraction - res.memory.weights_gb * BYTES_PER_GB
    expected = math.floor(pool / 524_288 / fw.kv_block_tokens) * fw.kv_block_tokens
    assert abs(res.kv_cache_tokens - expected) <= fw.kv_block_tokens


def test_llama3_8b_gqa_holds_about_four_times_the_kv_tokens(catalog: Catalog) -> None:
    l2 = cap(catalog, LLAMA2_7B)
    l3 = cap(catalog, LLAMA3_8B)
    # 8 KV heads instead of 32: a quarter of the bytes per token ...
    seq = 2048
    l3_bytes_per_token = l3.memory.kv_cache_gb * BYTES_PER_GB / (l3.max_batch * seq)
    assert l3_bytes_per_token == pytest.approx(2 * 32 * 8 * 128 * FP16_BYTES, rel=1e-9)  # 128 KiB
    # ... but 8.0B weights (128k vocab) leave a somewhat smaller pool, so a bit under 4x.
    ratio = l3.kv_cache_tokens / l2.kv_cache_tokens
    assert 3.5 < ratio < 4.0
    assert l3.memory.weights_gb > l2.memory.weights_gb
    assert l3.max_batch > 3 * l2.max_batch


def test_kv_limited_max_seq_len_is_the_kv_capacity(catalog: Catalog) -> None:
    # Llama-2-7B fp16 on a 16 GB T4 leaves only ~1k tokens of KV: shorter than the 4096 context.
    res = cap(catalog, gpu="t4", input_len=128, output_len=128)
    assert 0 < res.kv_cache_tokens < 4096
    assert res.max_seq_len == res.kv_cache_tokens
    longest = res.max_seq_len
    at_limit = cap(catalog, gpu="t4", input_len=longest - 16, output_len=16)
    assert at_limit.fits and at_limit.max_batch == 1
    beyond = cap(catalog, gpu="t4", input_len=longest, output_len=1)
    assert not beyond.fits and beyond.max_batch == 0


# --------------------------------------------------------------------------------------
# 3. Monotonicity in the lengths
# --------------------------------------------------------------------------------------


@settings(deadline=None)  # max_examples comes from the conftest profile (30)
@given(
    model=st.sampled_from([LLAMA2_7B, LLAMA3_8B, QWEN2_7B, MISTRAL_7B, LLAMA2_13B]),
    gpu=st.sampled_from([A100, "l40s", "h100-sxm", "l4"]),
    framework=st.sampled_from(["vllm", "sglang", "trtllm"]),
    input_len=st.integers(1, 8192),
    output_len=st.integers(1, 4096),
    grow_in=st.integers(0, 4096),
    grow_out=st.integers(0, 4096),
)
def test_max_batch_non_increasing_in_lengths(
    catalog: Catalog, model: str, gpu: str, framework: str, input_len: int, output_len: int, grow_in: int, grow_out: int
) -> None:
    base = cap(catalog, model, gpu, framework=framework, input_len=input_len, output_len=output_len)
    longer_in = cap(catalog, model, gpu, framework=framework, input_len=input_len + grow_in, output_len=output_len)
    longer_out = cap(catalog, model, gpu, framework=framework, input_len=input_len, output_len=output_len + grow_out)
    assert longer_in.max_batch <= base.max_batch
    assert longer_out.max_batch <= base.max_batch
    for r in (base, longer_in, longer_out):
        assert r.max_batch >= 0
        assert r.fits == (r.max_batch >= 1)


# --------------------------------------------------------------------------------------
# 4. A model that does not fit
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gpu,expected_tp", [("l40s", 4), (A100, 2)])
def test_llama2_70b_does_not_fit_on_one_gpu(catalog: Catalog, gpu: str, expected_tp: int) -> None:
    res = cap(catalog, LLAMA2_70B, gpu, input_len=1024, output_len=1024)
    mem = res.memory
    assert not res.fits
    assert res.max_batch == 0 and res.kv_cache_tokens == 0
    assert res.shortfall_gb > 0
    # Roughly the weights that do not fit in the usable memory; a little more because the
    # activation peak, the overhead and one sequence's KV also need room.
    rough = mem.weights_gb - mem.usable_gb
    assert rough > 0
    assert res.shortfall_gb >= rough
    assert res.shortfall_gb == pytest.approx(rough, rel=0.05)
    one_seq_kv_gb = 2048 * (2 * 80 * 8 * 128 * FP16_BYTES) / BYTES_PER_GB
    exact = mem.weights_gb + mem.activation_gb + mem.overhead_gb + one_seq_kv_gb - mem.usable_gb
    assert res.shortfall_gb == pytest.approx(exact, rel=1e-9)

    # fitting_tp is the smallest TP that fits.
    assert res.fitting_tp == expected_tp
    at_fit = cap(catalog, LLAMA2_70B, gpu, tp=res.fitting_tp, input_len=1024, output_len=1024)
    assert at_fit.fits and at_fit.max_batch >= 1
    arch = catalog.model(LLAMA2_70B)
    smaller_valid = [t for t in range(1, res.fitting_tp) if bool(tp_is_valid(arch, np.array([t]))[0])]
    assert smaller_valid, "there is a smaller valid TP to compare with"
    for t in smaller_valid:
        assert not cap(catalog, LLAMA2_70B, gpu, tp=t, input_len=1024, output_len=1024).fits

    out = res.as_dict()
    assert out["fits"] is False
    assert out["shortfall_gb"] == res.shortfall_gb
    assert out["fitting_tp"] == expected_tp


def test_no_tp_fits_gives_no_fitting_tp(catalog: Catalog) -> None:
    # Llama-3.1-405B in fp16 needs ~810 GB: not even 8 x 24 GB L4s hold it.
    res = cap(catalog, "meta-llama/Llama-3.1-405B", "l4", input_len=512, output_len=128)
    assert not res.fits
    assert res.shortfall_gb > 0
    assert res.fitting_tp is None


def test_invalid_tp_is_rejected(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequestError, match="tp"):
        cap(catalog, tp=3)


# --------------------------------------------------------------------------------------
# 5. Batch adjustment
# --------------------------------------------------------------------------------------


def test_too_large_batch_is_split_into_fewest_sub_batches(catalog: Catalog) -> None:
    res = cap(catalog, batch=100)
    assert res.max_batch == 58
    subs = res.sub_batches
    assert sum(subs) == 100
    assert all(0 < b <= res.max_batch for b in subs)
    assert len(subs) == math.ceil(100 / res.max_batch) == 2
    out = res.as_dict()
    assert out["requested_batch"] == 100 and out["sub_batches"] == subs


def test_batch_that_fits_is_one_sub_batch(catalog: Catalog) -> None:
    res = cap(catalog, batch=10)
    assert res.sub_batches == [10]


@pytest.mark.parametrize(
    "batch,max_batch,expected",
    [
        (10, 58, [10]),
        (58, 58, [58]),
        (59, 58, [30, 29]),
        (100, 58, [50, 50]),
        (7, 3, [3, 2, 2]),
        (10, 1, [1] * 10),
        (5, 0, []),
    ],
)
def test_split_batch_examples(batch: int, max_batch: int, expected: list[int]) -> None:
    assert split_batch(batch, max_batch) == expected


@given(batch=st.integers(1, 5000), max_batch=st.integers(1, 1000))
def test_split_batch_properties(batch: int, max_batch: int) -> None:
    parts = split_batch(batch, max_batch)
    assert sum(parts) == batch
    assert all(1 <= p <= max_batch for p in parts)
    assert len(parts) == math.ceil(batch / max_batch)  # as few as possible
    assert max(parts) - min(parts) <= 1  # as even as possible


def test_split_batch_of_zero_is_empty() -> None:
    assert split_batch(0, 5) == []


# --------------------------------------------------------------------------------------
# 6. Sizing for a load
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [2.0, 5.0, 12.0])
@pytest.mark.parametrize("slo", [{}, {"tpot_ms": 50.0}, {"ttft_ms": 500.0, "tpot_ms": 40.0}], ids=["no-slo", "tpot", "both"])
def test_rate_sizing_is_the_fewest_replicas(catalog: Catalog, rate: float, slo: dict) -> None:
    res = cap(catalog, input_len=1024, output_len=256, rate=rate, **slo)
    per_replica = replica_throughput_req_s(res, catalog)
    assert per_replica > 0
    assert res.replicas is not None and res.replicas >= 1
    assert res.replicas * per_replica >= rate * (1 - 1e-9)  # enough replicas ...
    assert (res.replicas - 1) * per_replica < rate  # ... and one fewer does not keep up
    tp, pp = res.request.resolved_tp, res.request.pp
    assert res.num_gpus == res.replicas * tp * pp
    assert res.usd_per_hour == pytest.approx(res.num_gpus * catalog.gpu(A100).usd_per_hour, abs=1e-3)
    m = res.metrics
    assert m is not None
    if "ttft_ms" in slo:
        assert m.ttft_ms <= slo["ttft_ms"]
    if "tpot_ms" in slo:
        assert m.tpot_ms <= slo["tpot_ms"]
    assert m.output_throughput_tok_s == pytest.approx(rate * 256)
    assert 1 <= res.concurrency_per_replica <= min(res.max_batch, catalog.framework("vllm").max_num_seqs)


def test_rate_sizing_counts_all_gpus_of_a_replica(catalog: Catalog) -> None:
    res = cap(catalog, LLAMA2_13B, "l40s", tp=2, input_len=512, output_len=256, rate=7.0)
    per_replica = replica_throughput_req_s(res, catalog)
    assert res.replicas * per_replica >= 7.0 * (1 - 1e-9) > (res.replicas - 1) * per_replica
    assert res.num_gpus == res.replicas * 2
    assert res.usd_per_hour == pytest.approx(res.num_gpus * catalog.gpu("l40s").usd_per_hour, abs=1e-3)
    piped = cap(catalog, gpu="l40s", pp=2, input_len=512, output_len=256, rate=7.0)
    assert piped.num_gpus == piped.replicas * 2


def test_tighter_slo_never_needs_fewer_replicas(catalog: Catalog) -> None:
    loose = cap(catalog, input_len=1024, output_len=256, rate=12.0)
    tight = cap(catalog, input_len=1024, output_len=256, rate=12.0, tpot_ms=50.0)
    assert tight.replicas >= loose.replicas


def test_impossible_slo_raises(catalog: Catalog) -> None:
    with pytest.raises(NoFeasiblePlanError, match="slo"):
        cap(catalog, input_len=1024, output_len=256, rate=5.0, tpot_ms=0.01)


def test_rate_beyond_replica_limit_raises(catalog: Catalog) -> None:
    with pytest.raises(NoFeasiblePlanError, match="rate"):
        cap(catalog, input_len=1024, output_len=256, rate=1e9)


# --------------------------------------------------------------------------------------
# 7. Longer than the model's context
# --------------------------------------------------------------------------------------


def test_sequence_longer_than_context_does_not_fit(catalog: Catalog) -> None:
    res = cap(catalog, input_len=3072, output_len=1025)  # 4097 > 4096
    assert not res.fits
    assert res.max_batch == 0
    assert "context" in res.reason and "4096" in res.reason
    assert res.as_dict()["reason"] == res.reason


def test_sequence_of_exactly_the_context_fits(catalog: Catalog) -> None:
    res = cap(catalog, input_len=3072, output_len=1024)  # 4096
    assert res.fits and res.max_batch >= 1
    assert res.reason == ""


# --------------------------------------------------------------------------------------
# Request validation (bugs)
# --------------------------------------------------------------------------------------

BASE_REQ = {"model": LLAMA2_7B, "gpu": A100, "input_len": 1024, "output_len": 1024}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    "bad",
    [
        {"input_len": 0},
        {"input_len": -5},
        {"output_len": 0},
        {"batch": -1},
        {"pp": 0},
        {"tp": -1},
        {"tp": 0},
        {"split": -4},
        {"rate": -3.0},
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
def test_api_rejects_non_positive_fields(catalog: Catalog, bad: dict) -> None:
    with pytest.raises(InvalidRequestError):
        api.capacity({**BASE_REQ, **bad}, catalog)


# --------------------------------------------------------------------------------------
# 8. CLI
# --------------------------------------------------------------------------------------

CLI_BASE = ["capacity", "--model", LLAMA2_7B, "--gpu", A100]


def run_cli(*args: str):
    return CliRunner().invoke(main, [*CLI_BASE, *args])


def test_cli_json_has_contract_keys() -> None:
    res = run_cli("--input-len", "1024", "--output-len", "1024", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert isinstance(out, dict)
    for key in ("max_batch", "kv_cache_tokens", "max_seq_len", "memory"):
        assert key in out
    assert set(out["memory"]) >= MEMORY_KEYS
    assert out["max_batch"] == 58 and out["max_seq_len"] == 4096
    assert "replicas" not in out


def test_cli_json_with_rate_has_sizing_keys() -> None:
    res = run_cli("--input-len", "1024", "--output-len", "256", "--rate", "5", "--tpot-ms", "50", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("max_batch", "kv_cache_tokens", "max_seq_len", "memory", "replicas", "num_gpus", "usd_per_hour", "metrics"):
        assert key in out
    assert out["replicas"] >= 1 and out["num_gpus"] == out["replicas"]
    assert out["metrics"]["tpot_ms"] <= 50
    assert {"ttft_ms", "tpot_ms", "output_throughput_tok_s"} <= set(out["metrics"])


def test_cli_csv_sweep_one_row_per_combination_and_fast() -> None:
    inputs = [128, 256, 512, 1024, 2048, 4096, 8192]  # 128:8192:x2
    outputs = [64, 100, 128, 200, 256, 300, 400, 500, 512, 600, 700, 800, 1024, 2048, 4096]
    assert len(inputs) * len(outputs) >= 100
    start = time.perf_counter()
    res = CliRunner().invoke(
        main,
        [*CLI_BASE, "--input-len", "128:8192:x2", "--output-len", "64,128,256,512,1024,2048,4096,100,200,300,400,500,600,700,800", "--csv"],
    )
    elapsed = time.perf_counter() - start
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    header = lines[0].split(",")
    assert header[:6] == ["input_len", "output_len", "fits", "max_batch", "kv_cache_tokens", "max_seq_len"]
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == len(inputs) * len(outputs)
    assert [(int(r[0]), int(r[1])) for r in rows] == [(i, o) for i in inputs for o in outputs]
    for r in rows:  # beyond the 4096 context: does not fit
        assert (r[2] == "True") == (int(r[0]) + int(r[1]) <= 4096)
    assert elapsed < 5.0, f"sweep of {len(rows)} rows took {elapsed:.2f} s (target ~3 s)"


def test_cli_json_sweep_is_a_list() -> None:
    res = run_cli("--input-len", "512,1024", "--output-len", "128:256:128", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert isinstance(out, list) and len(out) == 4
    assert [(r["input_len"], r["output_len"]) for r in out] == [(512, 128), (512, 256), (1024, 128), (1024, 256)]
    assert all(set(r["memory"]) >= MEMORY_KEYS for r in out)


def test_cli_table_mentions_sub_batches_and_shortfall() -> None:
    res = run_cli("--input-len", "1024", "--output-len", "1024", "--batch", "100")
    assert res.exit_code == 0, res.output
    assert "[50, 50]" in res.stdout
    res = CliRunner().invoke(main, ["capacity", "--model", LLAMA2_70B, "--gpu", "l40s", "--input-len", "1024", "--output-len", "1024"])
    assert res.exit_code == 3, res.output  # a single case that does not fit: the answer prints, exit 3 (CONTRACT)
    assert "does not fit" in res.stdout and "tp=4" in res.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--gpu", "no-such-gpu", "--input-len", "512", "--output-len", "128"],
        ["--input-len", "0", "--output-len", "128"],
        ["--input-len", "10:5:2", "--output-len", "128"],
        ["--input-len", "512", "--output-len", "x"],
        ["--input-len", "512", "--output-len", "128", "--tp", "3"],
    ],
    ids=["unknown-gpu", "zero-length", "backwards-range", "not-a-number", "bad-tp"],
)
def test_cli_bad_input_exits_1_with_one_line(args: list[str]) -> None:
    res = CliRunner().invoke(main, ["capacity", "--model", LLAMA2_7B, "--gpu", A100, *args])
    assert res.exit_code == 1
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # a handled error, not a crash
    assert one_line(res.stderr) and res.stderr.startswith("error:")
    assert res.stdout == ""


def test_cli_impossible_slo_exits_3_with_one_line() -> None:
    res = run_cli("--input-len", "1024", "--output-len", "256", "--rate", "5", "--tpot-ms", "0.01")
    assert res.exit_code == 3
    assert isinstance(res.exception, SystemExit)
    assert one_line(res.stderr) and "no feasible plan" in res.stderr


@pytest.mark.parametrize("args", [["--batch", "-5"], ["--pp", "0"]], ids=["batch-negative", "pp-zero"])
def test_cli_non_positive_numbers_exit_1_with_one_line(args: list[str]) -> None:
    res = run_cli("--input-len", "1024", "--output-len", "1024", *args)
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 1
    assert one_line(res.stderr) and res.stderr.startswith("error:")
