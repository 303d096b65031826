"""Fuzzing the command line and config.json fields (issue 14): whatever the input, no traceback,
a documented exit code, a one-line message naming the field, and a bounded time per case.

Runs in-process (CliRunner), with few enough examples that the fuzz suites together stay
under a minute on two cores; GUIDEOPT_HYPOTHESIS_PROFILE=thorough searches deeper.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from pathlib import Path

from click.testing import CliRunner
from conftest import LLAMA2_7B
from hypothesis import given, settings
from hypothesis import strategies as st

from guideopt import api
from guideopt.cli import main
from guideopt.errors import CatalogError, GuideoptError
from guideopt.model.hf_config import arch_from_hf_config
from guideopt.model.limits import MAX_PROCESS_MEMORY_BYTES

# More examples for bug hunting: GUIDEOPT_FUZZ_SCALE=20 python -m pytest tests/test_fuzz_*.py
SCALE = int(os.environ.get("GUIDEOPT_FUZZ_SCALE", "1"))
EXIT_CODES = {0, 1, 2, 3}  # CONTRACT.md: ok, bad input, usage, no feasible plan
CASE_LIMIT_S = 10.0  # a default plan must answer within 10 s whatever the input (issue 14)

# Values a user (or a script gone wrong) could type into any flag.
ODD_TEXT = st.sampled_from(
    ["", " ", "0", "-1", "nan", "inf", "-inf", "1e400", "1e308", "4096.9", "0x10", "1_000", "１２", "\x00", "a,b", "1:2:x", "8:1:2"]
)
NUMBER_TEXT = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(1, 4096).map(str),
)
FLAG_VALUE = st.one_of(ODD_TEXT, NUMBER_TEXT, st.text(max_size=6))


def check(result, elapsed_s: float) -> None:
    """The contract for every command: documented code, no traceback, one line for bad input."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in EXIT_CODES, result.output
    assert "Traceback" not in result.output
    if result.exit_code == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert elapsed_s < CASE_LIMIT_S
    assert peak_memory_bytes() < MAX_PROCESS_MEMORY_BYTES


def invoke(args: list[str]):
    start = time.perf_counter()
    result = CliRunner().invoke(main, args)
    check(result, time.perf_counter() - start)
    return result


PREDICT_FLAGS = ["--num-gpus", "--tp", "--pp", "--batch", "--input-len", "--output-len", "--split", "--h2o-keep", "--dtype", "--gpu"]


@settings(max_examples=40 * SCALE, deadline=None)
@given(st.dictionaries(st.sampled_from(PREDICT_FLAGS), FLAG_VALUE, max_size=4))
def test_predict_flags(flags: dict[str, str]) -> None:
    base = {"--model": LLAMA2_7B, "--gpu": "h100-sxm", "--input-len": "512", "--output-len": "64"}
    args = ["predict"] + [x for k, v in {**base, **flags}.items() for x in (k, v)]
    result = invoke(args)
    if result.exit_code == 1:  # the message names a flag the user gave, or the model
        assert any(flag in result.stderr for flag in [*base, *flags, "--tp", "--pp"]), result.stderr


SWEEP = st.one_of(
    FLAG_VALUE,
    st.builds(
        lambda a, b, s: f"{a}:{b}:{s}",
        st.integers(-5, 10**9),
        st.integers(-5, 10**9),
        st.one_of(NUMBER_TEXT, NUMBER_TEXT.map("x{}".format)),
    ),
    st.lists(st.integers(-3, 10**6).map(str), max_size=5).map(",".join),
)


@settings(max_examples=40 * SCALE, deadline=None)
@given(
    inputs=SWEEP, outputs=SWEEP, extra=st.dictionaries(st.sampled_from(["--batch", "--rate", "--tp", "--split"]), FLAG_VALUE, max_size=2)
)
def test_capacity_flags(inputs: str, outputs: str, extra: dict[str, str]) -> None:
    args = ["capacity", "--model", LLAMA2_7B, "--gpu", "l4", "--input-len", inputs, "--output-len", outputs, "--csv"]
    invoke(args + [x for k, v in extra.items() for x in (k, v)])


PLAN_FLAGS = [
    "--budget",
    "--input-len",
    "--output-len",
    "--batch",
    "--max-gpus",
    "--top",
    "--tp",
    "--pp",
    "--ttft-ms",
    "--tpot-ms",
    "--min-throughput",
]


@settings(max_examples=25 * SCALE, deadline=None)
@given(st.dictionaries(st.sampled_from(PLAN_FLAGS), FLAG_VALUE, max_size=3))
def test_plan_flags(flags: dict[str, str]) -> None:
    base = {"--model": LLAMA2_7B, "--budget": "6", "--input-len": "512", "--output-len": "128", "--gpu": "l4"}
    invoke(["plan"] + [x for k, v in {**base, **flags}.items() for x in (k, v)])


# ---------------------------------------------------------------- config.json fields

CONFIG_KEYS = [
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
    "intermediate_size",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
    "head_dim",
    "num_local_experts",
    "num_experts_per_tok",
    "tie_word_embeddings",
    "sliding_window",
    "use_sliding_window",
    "kv_lora_rank",
    "model_type",
    "hidden_act",
    "layer_types",
]
JSON_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(0, 70_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(0, 10), max_size=3),
    st.sampled_from(["llama", "mamba", "opt", "chatglm", "deepseek_v2", "gelu"]),
)
LLAMA_CONFIG = {
    "model_type": "llama",
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_hidden_layers": 4,
    "intermediate_size": 1024,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}


@settings(max_examples=150 * SCALE, deadline=None)
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUE, max_size=5))
def test_config_fields(changes: dict) -> None:
    cfg = {**LLAMA_CONFIG, **changes}
    try:
        arch = arch_from_hf_config(cfg, "fuzz/model")
    except CatalogError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("model: fuzz/model: ")
        return
    assert arch.num_params > 0 and math.isfinite(arch.kv_bytes_per_token(2.0))


@settings(max_examples=15 * SCALE, deadline=None)
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS[:8]), st.one_of(st.integers(1, 2**31 - 1), st.integers(1, 64)), max_size=3))
def test_config_sizes_predict_without_overflow(tmp_path_factory, changes: dict) -> None:
    path = Path(tmp_path_factory.mktemp("cfg")) / "config.json"
    path.write_text(json.dumps({**LLAMA_CONFIG, **changes}))
    start = time.perf_counter()
    try:
        pred = api.predict({"model": str(path), "gpu": "h100-sxm", "input_len": 64, "output_len": 8})
    except GuideoptError as exc:
        assert "\n" not in str(exc)
    else:
        assert math.isfinite(pred.metrics.ttft_ms) and pred.metrics.ttft_ms >= 0
    assert time.perf_counter() - start < CASE_LIMIT_S


# ---------------------------------------------------------------- CSV rows (predict --csv): every value is text

ROW_KEYS = ["gpu", "num_gpus", "tp", "pp", "framework", "dtype", "batch", "input_len", "output_len", "kv_dtype", "concurrency", "split"]


@settings(max_examples=60 * SCALE, deadline=None)
@given(st.dictionaries(st.sampled_from(ROW_KEYS), FLAG_VALUE, max_size=4))
def test_csv_row_values(changes: dict[str, str]) -> None:
    row = {"model": LLAMA2_7B, "gpu": "h100-sxm", "batch": "4", "input_len": "512", "output_len": "64", **changes}
    start = time.perf_counter()
    try:
        pred = api.predict(row)
    except GuideoptError as exc:  # the row keeps its place with this one line in its error column
        assert "\n" not in str(exc) and str(exc)
    else:
        assert pred.metrics.ttft_ms >= 0 and math.isfinite(pred.metrics.ttft_ms)
    assert time.perf_counter() - start < CASE_LIMIT_S


def peak_memory_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
