"""Fuzzing constraints files and web API bodies (issue 14): any text or structure gives a
request or one ``FILE:LINE: key: problem (fix)`` line; any body gives 200 or 422
``{"field", "message"}``; each case in bounded time.
"""

from __future__ import annotations

import copy
import json
import os
import re
import resource
import time
from typing import Any

import pytest
import yaml
from conftest import LLAMA2_7B
from hypothesis import given, settings
from hypothesis import strategies as st

from guideopt.catalog import load_catalog
from guideopt.io.constraints_file import ConstraintsFileError, LoadedFile, loads
from guideopt.model.limits import MAX_PROCESS_MEMORY_BYTES, MAX_YAML_NODES

# More examples for bug hunting: GUIDEOPT_FUZZ_SCALE=20 python -m pytest tests/test_fuzz_*.py
SCALE = int(os.environ.get("GUIDEOPT_FUZZ_SCALE", "1"))
VALID: dict[str, Any] = {
    "model": LLAMA2_7B,
    "workload": {"input_len": 512, "output_len": 128, "batch": 8},
    "budget": {"usd_per_hour": 12},
    "gpus": {"l4": 8, "a10g": {"max": 4, "usd_per_hour": 1.0}},
    "parallelism": {"tp": [1, 2], "pp": [1], "max_gpus": 8},
    "framework": ["vllm"],
    "precision": ["fp16"],
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    "objective": ["throughput", "cost"],
    "top": 2,
}
PATHS = [
    ("model",),
    ("workload", "input_len"),
    ("workload", "output_len"),
    ("workload", "batch"),
    ("budget", "usd_per_hour"),
    ("budget",),
    ("gpus", "l4"),
    ("gpus", "a10g", "max"),
    ("gpus", "a10g", "usd_per_hour"),
    ("gpus",),
    ("parallelism", "tp"),
    ("parallelism", "max_gpus"),
    ("framework",),
    ("precision",),
    ("slo", "ttft_ms"),
    ("objective",),
    ("top",),
    ("heterogeneous",),
    ("typo_key",),
]
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.integers(-2, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.sampled_from(["vllm", "any", "fp8", "throughput", "h100-sxm", LLAMA2_7B, "Qwen/Qwen2.5-7B-Instruct", "./x.json"]),
)
VALUE = st.recursive(
    LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=6
)
MUTATIONS = st.lists(st.tuples(st.sampled_from(PATHS), VALUE), min_size=1, max_size=3)
CASE_LIMIT_S = 5.0
ONE_LINE = re.compile(r"^[^\n]+?(:\d+)?: [^\n]+$")


def mutate(changes: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    for path, value in changes:
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    return data


def check_loads(text: str, fmt: str) -> LoadedFile | None:
    start = time.perf_counter()
    try:
        return loads(text, fmt, name="fuzz." + fmt, catalog=load_catalog())
    except ConstraintsFileError as exc:
        assert ONE_LINE.match(str(exc)), str(exc)
        assert str(exc).startswith("fuzz." + fmt)
        return None
    finally:
        assert time.perf_counter() - start < CASE_LIMIT_S
        assert peak_memory_bytes() < MAX_PROCESS_MEMORY_BYTES


@settings(max_examples=120 * SCALE, deadline=None)
@given(MUTATIONS, st.sampled_from(["yaml", "json"]))
def test_mutated_files_are_a_request_or_one_located_line(changes, fmt: str) -> None:
    data = mutate(changes)
    text = json.dumps(data, allow_nan=True) if fmt == "json" else yaml.safe_dump(data, allow_unicode=True)
    loaded = check_loads(text, fmt)
    if loaded is not None:  # what was accepted is what the request says
        assert loaded.request.workload.input_len == data["workload"]["input_len"]


@settings(max_examples=120 * SCALE, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["yaml", "json", "toml"]))
def test_any_text_is_a_request_or_one_located_line(text: str, fmt: str) -> None:
    check_loads(text, fmt)


@settings(max_examples=30 * SCALE, deadline=None)
@given(st.integers(2, 12), st.integers(2, 12))
def test_alias_nesting_is_bounded(width: int, depth: int) -> None:
    rows = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
    text = yaml.safe_dump(VALID) + "\n".join(rows) + "\n"
    expanded = sum(width**i for i in range(depth))
    result = check_loads(text, "yaml")
    assert result is None  # either the unknown key a0 or the expansion limit, never a hang
    if expanded > MAX_YAML_NODES:
        with pytest.raises(ConstraintsFileError, match="aliases expand"):
            loads(text, "yaml")


# ---------------------------------------------------------------- web API bodies

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from guideopt.web.app import create_app  # noqa: E402

CLIENT = TestClient(create_app(), raise_server_exceptions=False)


def check_response(resp) -> None:
    assert resp.status_code in (200, 422), (resp.status_code, resp.text)
    if resp.status_code == 422:
        body = resp.json()
        assert set(body) == {"field", "message"} and "\n" not in body["message"], body


@settings(max_examples=120 * SCALE, deadline=None)
@given(MUTATIONS)
def test_api_bodies_are_200_or_422_field_message(changes) -> None:
    start = time.perf_counter()
    body = json.dumps(mutate(changes), allow_nan=True)
    check_response(CLIENT.post("/api/constraints", content=body, headers={"content-type": "application/json"}))
    assert time.perf_counter() - start < CASE_LIMIT_S


@settings(max_examples=60 * SCALE, deadline=None)
@given(st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode)))
def test_api_raw_bytes_are_422(raw: bytes) -> None:
    resp = CLIENT.post("/api/plan", content=raw, headers={"content-type": "application/json"})
    check_response(resp)
    assert resp.status_code == 422


@settings(max_examples=12 * SCALE, deadline=None)
@given(MUTATIONS)
def test_api_plan_bodies_answer_in_bounded_time(changes) -> None:
    data = mutate(changes)
    if isinstance(data.get("gpus"), dict):  # keep the solves small: one cheap GPU type
        data["gpus"] = {"l4": 4}
    start = time.perf_counter()
    check_response(CLIENT.post("/api/plan", content=json.dumps(data, allow_nan=True), headers={"content-type": "application/json"}))
    assert time.perf_counter() - start < 10


def peak_memory_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
