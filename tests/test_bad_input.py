"""Issue 14's reproducers, one test each: the wrong answers, hangs and tracebacks now behave as described.

Each test names the issue item it pins. The web and long-run items are in
``test_bad_input_web.py``; the fuzz suites in ``test_fuzz_*.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import LLAMA2_7B, LLAMA2_70B

from guideopt.analyses.capacity import sub_batch_sizes
from guideopt.catalog import load_catalog, load_price_set
from guideopt.cli import main
from guideopt.errors import CatalogError, InvalidRequestError
from guideopt.io.constraints_file import ConstraintsFileError, loads
from guideopt.model.gpu import PriceGrade
from guideopt.model.limits import MAX_COLLECTION_ITEMS, MAX_CONSTRAINTS_FILE_BYTES, MAX_SWEEP_CASES

PLAN = ["plan", "--model", LLAMA2_7B, "--budget", "12", "--input-len", "512", "--output-len", "256"]
CAPACITY = ["capacity", "--model", LLAMA2_7B, "--gpu", "a100-sxm4-80gb", "--output-len", "256"]
FILE = "model: meta-llama/Llama-2-7b-hf\nworkload: {input_len: 512, output_len: 128}\nbudget: {usd_per_hour: 12}\ngpus: {l4: 8}\n"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_line(result, code: int, *words: str) -> str:
    """The error contract: the exit code, one line on stderr naming the field, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def with_flag(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


# ---------------------------------------------------------------- 1. context length


@pytest.mark.parametrize("input_len", ["10000", "10000000"])
def test_1_plan_longer_than_the_context_is_refused(input_len: str) -> None:
    line = one_line(run(*with_flag(PLAN, "--input-len", input_len)), 1, "--input-len", "context of 4,096", "at most 3,840")
    assert "optimal" not in line


def test_1_predict_and_solve_refuse_it_too(tmp_path: Path) -> None:
    one_line(
        run("predict", "--model", LLAMA2_7B, "--gpu", "h100-sxm", "--input-len", "4096", "--output-len", "1"), 1, "--input-len", "4,097"
    )
    path = tmp_path / "long.yaml"
    path.write_text(FILE.replace("input_len: 512", "input_len: 10000"))
    one_line(run("solve", str(path)), 1, f"{path}:2: workload.input_len", "context of 4,096")


def test_1_a_request_at_the_context_plans() -> None:
    assert run(*with_flag(with_flag(PLAN, "--input-len", "3840"), "--budget", "5")).exit_code in (0, 3)


# ---------------------------------------------------------------- 3. flags no longer ignored or unbounded


@pytest.mark.parametrize(
    "flag,value,words",
    [
        ("--max-gpus", "0", ["--max-gpus", "must be > 0"]),
        ("--budget", "inf", ["--budget", "finite"]),
        ("--budget", "nan", ["--budget", "finite"]),
        ("--budget", "1e308", ["--budget", "at most 10,000,000"]),
        ("--top", "0", ["--top", ">= 1"]),
    ],
)
def test_3_bad_flag_values_are_refused(flag: str, value: str, words: list[str]) -> None:
    args = PLAN + [flag, value] if flag not in PLAN else with_flag(PLAN, flag, value)
    one_line(run(*args), 1, *words)


def test_3_numeric_warnings_do_not_hang_or_leak() -> None:
    # found by the fuzz suite: a numpy warning re-emitted while warnings were being recorded
    # looped forever and grew to gigabytes
    start = time.perf_counter()
    one_line(run(*PLAN, "--gpu", "l4", "--min-throughput", "1e12"), 3, "no feasible plan", "slo.min_output_throughput_tok_s")
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    "flag,value,words",
    [
        ("--min-throughput", "1e300", ["--min-throughput", "<= 1,000,000,000,000"]),
        ("--ttft-ms", "1e300", ["--ttft-ms", "<= 1,000,000,000,000 ms"]),
        ("--tpot-ms", "inf", ["--tpot-ms", "finite number of ms"]),
    ],
)
def test_3_huge_slos_are_refused_before_the_mixed_type_model(flag: str, value: str, words: list[str]) -> None:
    # --min-throughput 1e300 with --heterogeneous overflowed the CP-SAT integer scale (a traceback)
    one_line(run(*PLAN, "--heterogeneous", flag, value), 1, *words)


# ---------------------------------------------------------------- 5. unmodelled architectures


def _config(tmp_path: Path, **fields) -> str:
    base = {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32}
    base.update(intermediate_size=11008, vocab_size=32000, max_position_embeddings=4096)
    base.update(fields)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in base.items() if v is not ...}))
    return str(path)


def test_5_mla_missing_a_latent_size_names_the_key(tmp_path: Path) -> None:
    deepseek = _config(tmp_path, model_type="deepseek_v2", hidden_size=5120, num_attention_heads=128, kv_lora_rank=512, qk_rope_head_dim=64)
    line = one_line(run("predict", "--model", deepseek, "--gpu", "h100-sxm", "--input-len", "512", "--output-len", "128"), 1)
    assert line.startswith("error: --model: ") and "'qk_nope_head_dim'" in line and "copy it from the model's config.json" in line


def test_5_mla_config_is_planned_with_its_latent_cache(tmp_path: Path) -> None:
    fields = dict(model_type="deepseek_v2", hidden_size=2048, num_attention_heads=16, kv_lora_rank=512, qk_rope_head_dim=64)
    fields.update(qk_nope_head_dim=128, v_head_dim=128, q_lora_rank=None, num_hidden_layers=4)
    arch = load_catalog().model(_config(tmp_path, **fields))
    assert arch.kv_bytes_per_token(2.0) == 4 * (512 + 64) * 2  # one latent per layer, not 2 x heads x head_dim


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"model_type": "mamba"}, "model_type 'mamba'"),
        ({"ssm_cfg": {}}, "'ssm_cfg'"),
        ({"attn_type_list": [0, 1]}, "'attn_type_list'"),
    ],
)
def test_5_unmodelled_linear_attention_is_refused_naming_the_key(tmp_path: Path, fields: dict, key: str) -> None:
    with pytest.raises(CatalogError, match="linear-attention / state-space") as err:
        load_catalog().model(_config(tmp_path, **fields))
    assert key in str(err.value)


def test_5_an_unknown_layer_kind_names_layer_types(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="'layer_types': layer kind 'lightning_attention'"):
        load_catalog().model(_config(tmp_path, num_hidden_layers=2, layer_types=["lightning_attention", "full_attention"]))


def test_5_sliding_window_is_modelled_not_warned() -> None:
    result = run("predict", "--model", "mistralai/Mistral-7B-v0.1", "--gpu", "h100-sxm", "--input-len", "512", "--output-len", "128")
    assert result.exit_code == 0
    assert "sliding" not in result.stderr


# ---------------------------------------------------------------- 6. capacity exit codes


def test_6_a_single_case_that_does_not_fit_exits_3_after_the_answer() -> None:
    result = run("capacity", "--model", LLAMA2_70B, "--gpu", "l4", "--input-len", "512", "--output-len", "256", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["fits"] is False
    one_line(result, 3, "does not fit", "short by")


def test_6_a_sweep_with_rows_that_do_not_fit_exits_0_with_reasons() -> None:
    result = run(*CAPACITY, "--input-len", "1024,100000", "--csv")
    assert result.exit_code == 0
    rows = result.stdout.strip().splitlines()
    assert rows[0].endswith(",reason") and "exceeds the model's context" in rows[2] and rows[1].endswith(",")


# ---------------------------------------------------------------- 8. hostile constraints files


def test_8_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text(FILE + "\n".join(levels) + "\n")
    start = time.perf_counter()
    one_line(run("solve", str(path)), 1, "aliases expand")
    assert time.perf_counter() - start < 5


def test_8_oversized_and_over_long_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(FILE + "#" * MAX_CONSTRAINTS_FILE_BYTES)
    one_line(run("solve", str(big)), 1, "over 256 KiB")
    many = tmp_path / "many.json"
    many.write_text(json.dumps({"model": LLAMA2_7B, "gpus": {f"g{i}": 1 for i in range(10_000)}}))
    start = time.perf_counter()
    one_line(run("solve", str(many)), 1, "gpus", f"more than {MAX_COLLECTION_ITEMS:,} items")
    assert time.perf_counter() - start < 5


def test_8_a_self_referring_alias_is_one_line() -> None:
    with pytest.raises(ConstraintsFileError, match=r"refers to itself|nests too deeply"):
        loads(FILE + "x: &x [*x]\n", "yaml")


# ---------------------------------------------------------------- 9 and 12. sweeps


@pytest.mark.parametrize(
    "lengths,words",
    [
        (["1:100000000:x1.000000001", "256"], ["--input-len", "more than 1,000"]),
        (["1:4096:+1", "1:64:+1"], ["--input-len", "more than 1,000 values"]),
        (["1:999:+1", "1:10:+1"], ["--input-len", f"more than {MAX_SWEEP_CASES:,}"]),
        (["128:8192:xnan", "256"], ["--input-len", "finite factor"]),
        (["128:8192:xinf", "256"], ["--input-len", "finite factor"]),
    ],
)
def test_9_12_sweeps_are_capped_before_any_work(lengths: list[str], words: list[str]) -> None:
    args = ["capacity", "--model", LLAMA2_7B, "--gpu", "l4", "--input-len", lengths[0], "--output-len", lengths[1]]
    start = time.perf_counter()
    one_line(run(*args), 1, *words)
    assert time.perf_counter() - start < 5


def test_9_a_huge_batch_is_summarised() -> None:
    result = run(*CAPACITY, "--input-len", "512", "--batch", "1000000000", "--json")
    assert result.exit_code == 0 and len(result.stdout) < 10_000
    out = json.loads(result.stdout)
    assert "sub_batches" not in out and out["sub_batch_count"] == sum(out["sub_batch_sizes"].values())
    assert sum(int(size) * n for size, n in out["sub_batch_sizes"].items()) == 1_000_000_000
    assert sub_batch_sizes(7, 3) == {3: 1, 2: 2}


@pytest.mark.parametrize(
    "args,words",
    [(["--tp", "3"], ["--tp", "does not divide"]), (["--gpu", "mi300x", "--framework", "trtllm"], ["--framework", "does not run on AMD"])],
)
def test_capacity_gives_the_layout_verdict_predict_gives(args: list[str], words: list[str]) -> None:
    base = ["capacity", "--model", LLAMA2_7B, "--gpu", "l4", "--input-len", "512", "--output-len", "64"]
    one_line(run(*base, *args), 1, *words)
    assert run(*base, "--tp", "16").exit_code == 0  # TP across nodes, as predict allows (found by the fuzz suite)


def test_12_rate_inf_is_one_line() -> None:
    one_line(run(*CAPACITY, "--input-len", "512", "--rate", "inf"), 1, "--rate", "finite")


# ---------------------------------------------------------------- 10. malformed config.json


@pytest.mark.parametrize(
    "text,words",
    [
        ('{"num_attention_heads": 0}', ["'num_attention_heads'", "between 1"]),
        ('{"hidden_size": null}', ["lacks 'hidden_size'"]),
        ('{"hidden_size": [4096]}', ["'hidden_size'", "a list"]),
        ('{"hidden_size": true}', ["'hidden_size'", "whole number"]),
        ('{"hidden_size": 4096.9}', ["'hidden_size'", "4096.9"]),
        ('{"num_hidden_layers": 1e400}', ["'num_hidden_layers'", "Infinity"]),
        ('{"num_attention_heads": 8192}', ["'num_attention_heads'", "exceed hidden_size"]),
        ('{"num_key_value_heads": 5}', ["'num_key_value_heads'", "does not divide"]),
    ],
)
def test_10_a_bad_config_field_is_named(tmp_path: Path, text: str, words: list[str]) -> None:
    path = Path(_config(tmp_path))
    cfg = json.loads(path.read_text())
    key = next(iter(json.loads(text.replace("1e400", "1"))))
    body = json.dumps({k: v for k, v in cfg.items() if k != key})
    path.write_text(body[:-1] + ", " + text[1:])
    line = one_line(run("predict", "--model", str(path), "--gpu", "h100-sxm", "--input-len", "64", "--output-len", "8"), 1, *words)
    assert line.startswith("error: --model: ")


def test_10_non_utf8_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"model_type": "\xff\xfe"}')
    one_line(run("predict", "--model", str(path), "--gpu", "h100-sxm", "--input-len", "64", "--output-len", "8"), 1, "not UTF-8")


# ---------------------------------------------------------------- 11. validate's CSV


def test_11_validate_reads_excel_csv_and_refuses_duplicates(tmp_path: Path) -> None:
    from guideopt.calibration.validate import CSV_COLUMNS, load_measurements

    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + ",".join(CSV_COLUMNS).encode() + b"\n")
    assert load_measurements(bom) == []  # the BOM no longer hides the first column
    dup = tmp_path / "dup.csv"
    dup.write_text(",".join((*CSV_COLUMNS, "value")) + "\n")
    with pytest.raises(InvalidRequestError, match="'value' is given twice"):
        load_measurements(dup)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(",".join(CSV_COLUMNS).encode() + b"\n\xe9\xe9\n")
    one_line(run("validate", str(latin)), 1, "not UTF-8")


# ---------------------------------------------------------------- 15 and 16. one resolver, flag names


def test_15_one_model_resolver_for_every_entry_point(tmp_path: Path) -> None:
    from guideopt.web.app import parse_request

    cat = load_catalog()
    instruct = "Qwen/Qwen2.5-7B-Instruct"
    assert cat.model(instruct) is cat.model("Qwen/Qwen2.5-7B")
    text = FILE.replace(LLAMA2_7B, instruct)
    assert loads(text, "yaml").request.model == instruct  # the file keeps the weights the user named
    request = {"model": "meta-llama/Llama-2-7b-chat-hf", "workload": {"input_len": 512, "output_len": 128}, "budget": {"usd_per_hour": 9}}
    assert parse_request(request).model == "meta-llama/Llama-2-7b-chat-hf"


def test_16_flag_errors_name_the_flag_in_plain_words() -> None:
    line = one_line(run(*with_flag(PLAN, "--budget", "-1")), 1)
    assert line == "error: --budget: must be > 0, got -1.0 (give a positive number)"
    one_line(run(*PLAN, "--dtype", "bf17"), 1, "--dtype", "did you mean 'bf16'")
    one_line(run(*PLAN, "--tp", "4096"), 1, "--tp", "at most 1024")


# ---------------------------------------------------------------- 19. prices


def test_19_every_price_has_a_grade_and_weak_ones_are_noted() -> None:
    cat = load_catalog()
    assert cat.gpus["mi300x"].price_grade is PriceGrade.LOW_RELIABILITY
    assert cat.gpus["h100-sxm"].price_grade is PriceGrade.PROVIDER_CATALOG
    result = run(*PLAN, "--gpu", "mi300x")  # the note follows the GPU in the plan, whichever the cost model prefers
    assert "price note: mi300x" in result.stdout and "low-reliability" in result.stdout


def test_19_a_price_source_replaces_the_catalog_prices(tmp_path: Path) -> None:
    lambda_set = load_price_set("lambda").prices()
    plan = json.loads(run(*PLAN, "--prices", "lambda", "--json").stdout)
    for p in plan["plans"]:
        assert set(p["gpu_counts"]) <= set(lambda_set)
        assert p["usd_per_hour"] == pytest.approx(sum(n * lambda_set[g].usd_per_hour for g, n in p["gpu_counts"].items()), abs=1e-3)
    own = tmp_path / "prices.yaml"
    own.write_text("l4: 0.2\n")
    mine = json.loads(run(*PLAN, "--prices", str(own), "--json").stdout)
    assert {g for p in mine["plans"] for g in p["gpu_counts"]} == {"l4"}
    one_line(run(*PLAN, "--prices", "nowhere"), 1, "--prices", "lambda")
    own.write_text("h100: 2\n")
    one_line(run(*PLAN, "--prices", str(own)), 1, "did you mean 'h100-")


# ---------------------------------------------------------------- one verdict, one message, three entry points


@pytest.mark.parametrize(
    "flag,key,value,written",
    [
        ("--budget", ("budget", "usd_per_hour"), -1.0, "-1.0"),
        ("--budget", ("budget", "usd_per_hour"), float("inf"), "inf"),
        ("--budget", ("budget", "usd_per_hour"), 1e308, "1e308"),
        ("--input-len", ("workload", "input_len"), 0, "0"),
        ("--input-len", ("workload", "input_len"), 10_000, "10000"),
        ("--max-gpus", ("parallelism", "max_gpus"), 0, "0"),
        ("--top", ("top",), 51, "51"),
    ],
)
def test_the_same_value_gets_the_same_message_everywhere(tmp_path: Path, flag: str, key: tuple, value, written: str) -> None:
    from fastapi.testclient import TestClient

    from guideopt.web.app import create_app

    data = {"model": LLAMA2_7B, "workload": {"input_len": 512, "output_len": 256}, "budget": {"usd_per_hour": 12}}
    node = data
    for k in key[:-1]:
        node = node.setdefault(k, {})
    node[key[-1]] = value
    path = tmp_path / "request.json"
    path.write_text(json.dumps(data))  # json writes inf as Infinity, which the file reader accepts
    dotted = ".".join(key)
    cli = one_line(run(*PLAN, flag, written) if flag not in PLAN else run(*with_flag(PLAN, flag, written)), 1)
    file = one_line(run("solve", str(path)), 1)
    web = TestClient(create_app()).post("/api/plan", content=json.dumps(data), headers={"content-type": "application/json"}).json()
    problem = cli.removeprefix(f"error: {flag}: ")
    assert file.split(f": {dotted}: ", 1)[1] == problem
    assert web == {"field": dotted, "message": problem}
