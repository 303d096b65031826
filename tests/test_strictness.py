"""Issue 25, "one strictness": a key written twice is refused with the same words on every
surface (constraints files, --prices files, calibration overlays, JSONL traces, web API
bodies; before, only constraints files refused it), and true/false is never a number
(a --prices file priced a GPU at `true` = $1/h, an overlay read `true` as 1 ms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from guideopt.cli import main
from guideopt.model.unique_keys import DUPLICATE_KEY, DuplicateKeyError, loads_json, loads_yaml
from guideopt.web.app import FieldError, parse_request

MODEL = "meta-llama/Llama-3.1-8B"
PLAN = ["plan", "--model", MODEL, "--budget", "10", "--input-len", "512", "--output-len", "128", "--gpu", "h100-sxm"]
PREDICT = ["predict", "--model", MODEL, "--gpu", "h100-sxm", "--batch", "1", "--input-len", "16", "--output-len", "4"]
SIMULATE = ["simulate", "--model", MODEL, "--gpu", "h100-sxm", "--rate", "1", "--num-requests", "5"]
OVERLAY_TERMS = "    prefill_step_overhead_ms: 1\n    kernel_efficiency: 0.5\n"
BODY = {"model": MODEL, "workload": {"input_len": 512, "output_len": 128}, "budget": {"usd_per_hour": 10}, "gpus": {"h100-sxm": 8}}


def _one_error_line(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.output
    return lines[0]


def test_the_finders_name_the_path_and_the_line_of_the_repeat() -> None:
    with pytest.raises(DuplicateKeyError) as info:
        loads_json('{"a": 1,\n "b": {"c": 1,\n  "c": 2}}')
    assert info.value.path == ("b", "c") and info.value.line == 3 and str(info.value) == f"b.c: {DUPLICATE_KEY}"
    with pytest.raises(DuplicateKeyError) as info:
        loads_yaml("a: 1\nb:\n  - {c: 1}\n  - {c: 1, c: 2}\n")
    assert info.value.path == ("b", 1, "c") and info.value.line == 4
    assert loads_json('{"a": {"a": 1}, "b": [{"a": 2}]}') == {"a": {"a": 1}, "b": [{"a": 2}]}  # equal keys in other objects


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("p.yaml", "h100-sxm: 2\nh100-sxm: 3\n", "p.yaml:2: h100-sxm"),
        ("p.json", '{"gpus": {"h100-sxm": 2,\n "h100-sxm": 3}}', "p.json:2: gpus.h100-sxm"),
        ("p.yaml", "gpus: {h100-sxm: 2}\ntiers: {spot: {h100-sxm: 1, h100-sxm: 2}}\n", "p.yaml:2: tiers.spot.h100-sxm"),
    ],
)
def test_a_price_file_refuses_a_key_written_twice(tmp_path: Path, name: str, text: str, where: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    line = _one_error_line([*PLAN, "--prices", str(f)])
    assert line.startswith("error: --prices: ") and line.endswith(f"{where}: {DUPLICATE_KEY}"), line


def test_an_overlay_refuses_a_key_written_twice(tmp_path: Path) -> None:
    f = tmp_path / "o.yaml"
    f.write_text(f"frameworks:\n  vllm:\n    decode_step_overhead_ms: 1\n{OVERLAY_TERMS}    decode_step_overhead_ms: 9\n")
    line = _one_error_line([*PREDICT, "--calibration", str(f)])
    assert line == f"error: --calibration: {f}:6: frameworks.vllm.decode_step_overhead_ms: {DUPLICATE_KEY}"


def test_a_jsonl_trace_refuses_a_key_written_twice(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text('{"input_len": 5, "output_len": 3}\n{"input_len": 5, "output_len": 3, "input_len": 7}\n')
    assert _one_error_line([*SIMULATE, "--lengths", str(f)]) == f"error: {f}:2: input_len: {DUPLICATE_KEY}"
    f.write_text('{"input_len": 5, "output_len": 3, "note": "a:b"}\n')  # a colon in a value is no repeat
    assert CliRunner().invoke(main, [*SIMULATE, "--lengths", str(f)]).exit_code == 0


def test_a_csv_trace_refuses_a_column_written_twice(tmp_path: Path) -> None:
    """As predict --csv does; the trace reader used one of the two silently."""
    f = tmp_path / "t.csv"
    f.write_text("input_len,output_len,input_len\n100,20,300\n")
    assert _one_error_line([*SIMULATE, "--lengths", str(f)]) == f"error: {f}:1: column 'input_len' is given twice (keep one)"


def test_a_constraints_file_names_the_whole_path(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    body = {**BODY, "gpus": {"h100-sxm": {"max": 8, "usd_per_hour": 2}}}
    f.write_text(json.dumps(body, indent=1).replace('"usd_per_hour": 2', '"usd_per_hour": 2,\n "usd_per_hour": 3'))
    line = _one_error_line(["solve", str(f)])
    assert line.endswith(f"gpus.h100-sxm.usd_per_hour: {DUPLICATE_KEY}") and f"{f}:" in line, line


def test_a_web_body_refuses_a_key_written_twice() -> None:
    raw = json.dumps(BODY).replace('"output_len": 128', '"output_len": 128, "input_len": 1024').encode()
    with pytest.raises(FieldError) as info:
        parse_request(json.loads(raw), raw=raw)
    assert (info.value.field, info.value.message) == ("workload.input_len", DUPLICATE_KEY)
    assert parse_request(BODY, raw=json.dumps(BODY).encode()).workload.input_len == 512


def test_true_is_not_a_price_or_an_overlay_term(tmp_path: Path) -> None:
    prices = tmp_path / "p.yaml"
    prices.write_text("h100-sxm: true\n")
    line = _one_error_line([*PLAN, "--prices", str(prices)])
    assert line == (
        f"error: --prices: {prices}: h100-sxm: expected a price or a mapping, got true "
        "(write a price per GPU-hour such as 2.5, or a mapping such as {usd_per_hour: 2.5})"
    )
    overlay = tmp_path / "o.yaml"
    overlay.write_text(f"frameworks:\n  vllm:\n    decode_step_overhead_ms: true\n{OVERLAY_TERMS}")
    line = _one_error_line([*PREDICT, "--calibration", str(overlay)])
    assert line == (
        f"error: --calibration: {overlay}: frameworks.vllm.decode_step_overhead_ms: expected a number, got true "
        "(write it without quotes, e.g. 12.5)"
    )


def test_a_number_written_as_text_reads_the_same_everywhere(tmp_path: Path) -> None:
    """The shared rule: "2.5" is 2.5 (as a flag or CSV cell is) in files, price files, overlays and bodies."""
    prices = tmp_path / "p.yaml"
    prices.write_text('h100-sxm: "2.5"\n')
    assert CliRunner().invoke(main, [*PLAN, "--prices", str(prices)]).exit_code == 0
    overlay = tmp_path / "o.yaml"
    overlay.write_text(f'frameworks:\n  vllm:\n    decode_step_overhead_ms: "1"\n{OVERLAY_TERMS}')
    assert CliRunner().invoke(main, [*PREDICT, "--calibration", str(overlay)]).exit_code == 0
    assert parse_request({**BODY, "budget": {"usd_per_hour": "10"}}).budget.usd_per_hour == 10


def test_a_flag_and_a_file_key_get_the_same_words(tmp_path: Path) -> None:
    """simulate's flags said pydantic's own words ("Input should be less than or equal to 200000")."""
    flag = _one_error_line([*SIMULATE[:-2], "--input-len", "100", "--output-len", "20", "--num-requests", "10000000"])
    f = tmp_path / "c.yaml"
    f.write_text(
        f"model: {MODEL}\nworkload: {{input_len: 100, output_len: 20, rate_rps: 1, num_requests: 10000000}}\nbudget: {{usd_per_hour: 10}}\n"
    )
    key = _one_error_line(["solve", str(f)])
    words = "must be <= 200,000, got 10000000 (give at most 200,000)"
    assert flag == f"error: --num-requests: {words}" and key.endswith(f"workload.num_requests: {words}"), (flag, key)


def test_a_token_budget_too_big_to_fit_is_named() -> None:
    """Item 8: a 10^12-token budget leaves no KV memory; the refusal said only "use more TP/PP"."""
    args = [*SIMULATE[:-2], "--input-len", "100", "--output-len", "20", "--num-requests", "20", "--token-budget", str(10**12)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 3 and "use a smaller --token-budget" in res.stderr, res.output


@pytest.mark.parametrize("lengths", ["sharegp", "../../README", {"mix": "x"}])
def test_the_web_names_mixes_and_buckets_not_files_for_an_unknown_mix(lengths) -> None:
    """Item 6: the web reads no files, so its refusal must not offer "or give a CSV/JSONL file"."""
    with pytest.raises(FieldError) as info:
        parse_request({**BODY, "workload": {"rate_rps": 1, "lengths": lengths}})
    assert info.value.field == "workload.lengths" and "sharegpt" in info.value.message and "inline buckets" in info.value.message
    assert "file" not in info.value.message
