"""Every TensorRT-LLM flag and LLM API key the launch outputs write (aggregated, attention DP / EP,
multi-node, the disaggregated pools and their router) is in the checked list
tests/data/engine_flags/trtllm-from-dynamo-1.6.1.json (scripts/extract_trtllm_evidence.py).

That list is second-hand evidence: the tensorrt-llm wheel is not readable here, so the keys are
checked against ai-dynamo 1.6.1, which drives TensorRT-LLM 1.3.0rc29 through its LLM API, and
aiconfigurator-core 0.12.0. A key nothing readable shows is listed as "recalled"; the tests below
pin which emitted ones those are, so that a new unconfirmed key cannot slip in unnoticed."""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from guideopt.io.launch import emit
from tests.test_engine_flags import FLAGS_DIR, _run_node, _stub_dir
from tests.test_engine_flags import _plan as _aggregated_plan
from tests.test_launch_disagg import _emit as _emit_disaggregated
from tests.test_launch_moe import _emit as _emit_group
from tests.test_launch_moe import _layout

EVIDENCE = json.loads((FLAGS_DIR / "trtllm-from-dynamo-1.6.1.json").read_text())
SERVE_LIST = json.loads((FLAGS_DIR / "trtllm-1.2.1.json").read_text())
FRAMEWORKS = ["trtllm", "trtllm-1.2"]
CONFIRMED = "confirmed"
# Emitted options no readable package shows (the wheel would settle them): kept, marked recalled.
KNOWN_RECALLED_OPTIONS = {"kv_cache_config.dtype", "moe_tensor_parallel_size", "moe_config.backend"}
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
HEREDOC = re.compile(r"<<'YAML'\n(.*?)\n\s*YAML\b", re.DOTALL)


@dataclass
class Emitted:
    """The TensorRT-LLM flags, options-file keys (dotted) and values a set of launch files write."""

    flags: set[str] = field(default_factory=set)
    values: dict[str, set[str]] = field(default_factory=dict)
    mpirun_flags: set[str] = field(default_factory=set)
    options: dict[str, set[Any]] = field(default_factory=dict)
    router_commands: list[list[str]] = field(default_factory=list)

    def add_text(self, text: str) -> None:
        for line in text.splitlines():
            if "trtllm-serve " in line and not line.lstrip().startswith("#"):
                self._add_line(line)
        for body in HEREDOC.findall(text):
            for key, value in flatten(yaml.safe_load(textwrap.dedent(body))):
                self.options.setdefault(key, set()).add(value)

    def _add_line(self, line: str) -> None:
        head, tail = line.split("trtllm-serve ", 1)
        tokens = shlex.split(tail)
        if tokens[0] == "disaggregated":
            self.router_commands.append(["trtllm-serve", *tokens[:2]])
            return
        self.flags |= set(FLAG.findall(tail))
        for flag, value in zip(tokens, tokens[1:]):
            if flag.startswith("--") and not value.startswith("--"):
                self.values.setdefault(flag, set()).add(value)
        if "mpirun" in head:
            launcher = head.split("mpirun", 1)[1].split()
            assert EVIDENCE["multi_node"]["launcher"] == launcher[-1], head
            self.mpirun_flags |= {t for t in launcher if t.startswith("-")}


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) of a parsed options file; lists and scalars are leaves."""
    for key, value in (obj or {}).items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", json.dumps(value) if isinstance(value, list) else value


def _texts(path: Path) -> Iterator[str]:
    """The text of a script, or every string of a Kubernetes manifest (commands sit in block scalars)."""
    if path.suffix == ".yaml":
        yield from _manifest_strings(path.read_text())
    else:
        yield path.read_text()


def _manifest_strings(text: str) -> Iterator[str]:
    stack: list[Any] = list(yaml.safe_load_all(text))
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack += item.values()
        elif isinstance(item, list):
            stack += item


def check(emitted: Emitted) -> None:
    """Every flag, key and fixed value emitted is in the checked list; no emitted flag sets an
    unconfirmed LLM API key; the only unconfirmed options keys are the known recalled ones."""
    serve, options = EVIDENCE["serve_flags"], EVIDENCE["options_file_keys"]
    assert emitted.flags <= set(serve), sorted(emitted.flags - set(serve))
    assert all(serve[f]["sets"] is None or serve[f]["status"] == CONFIRMED for f in emitted.flags)
    assert emitted.values.get("--backend", set()) <= set(EVIDENCE["llm_api_values"]["backend"])
    assert emitted.mpirun_flags <= set(EVIDENCE["multi_node"]["mpirun_flags"]), emitted.mpirun_flags
    assert set(emitted.options) <= set(options), sorted(set(emitted.options) - set(options))
    unconfirmed = {k for k in emitted.options if options[k]["status"] != CONFIRMED}
    assert unconfirmed <= KNOWN_RECALLED_OPTIONS, unconfirmed
    for key, values in emitted.options.items():
        fixed = options[key]["value"]
        assert fixed == "set by the plan" or values == {fixed}, (key, values)
    for command in emitted.router_commands:
        assert command == EVIDENCE["router"]["command"], command


def _emitted_files(paths: list[Path]) -> Emitted:
    out = Emitted()
    for path in (p for p in paths if p.suffix in (".sh", ".yaml")):  # PLAN.md names commands in prose
        for text in _texts(path):
            out.add_text(text)
    return out


def test_the_list_is_second_hand_evidence_for_the_tensorrt_llm_dynamo_drives() -> None:
    assert EVIDENCE["evidence"].startswith("SECOND-HAND") and "NOT from the tensorrt-llm wheel" in EVIDENCE["evidence"]
    assert (EVIDENCE["package"], EVIDENCE["tensorrt_llm"]["version"]) == ("ai-dynamo==1.6.1", "1.3.0rc29")
    assert set(EVIDENCE["serve_flags"]) <= set(SERVE_LIST["flags"])  # the hand-transcribed trtllm-serve list agrees
    for entry in [*EVIDENCE["serve_flags"].values(), *EVIDENCE["options_file_keys"].values()]:
        assert (entry.get("status") == CONFIRMED) == bool(entry.get("cited"))
        assert all(re.fullmatch(r"[\w./-]+\.py:\d+", cite) for cite in entry.get("cited", []))


@pytest.mark.parametrize("fw_id", FRAMEWORKS)
@pytest.mark.parametrize("layout", ["single-gpu", "multi-node"])
def test_aggregated_outputs_write_only_checked_flags(fw_id: str, layout: str, tmp_path: Path) -> None:
    req, result = _aggregated_plan(fw_id, "nvidia", layout)
    assert result is not None
    emitted = _emitted_files(emit(result, tmp_path / "out", request=req))
    check(emitted)
    assert {"--tp_size", "--kv_cache_free_gpu_memory_fraction"} <= emitted.flags
    assert bool(emitted.mpirun_flags) == (layout == "multi-node")


@pytest.mark.parametrize("fw_id", FRAMEWORKS)
@pytest.mark.parametrize(("tp", "attention_dp"), [(1, 8), (8, 1)])
def test_attention_dp_and_expert_parallel_options_are_checked_keys(fw_id: str, tp: int, attention_dp: int, tmp_path: Path) -> None:
    _, result = _aggregated_plan(fw_id, "nvidia", "single-gpu")
    assert result is not None
    group = _layout(result.plans[0].groups[0], fw_id, tp=tp, attention_dp=attention_dp, moe_ep=8)
    script, manifests = _emit_group(group, tmp_path)
    emitted = Emitted()
    for text in [script, *_manifest_strings(manifests)]:
        emitted.add_text(text)
    check(emitted)
    assert {"enable_attention_dp", "moe_expert_parallel_size", "kv_cache_config.dtype"} <= set(emitted.options)
    assert EVIDENCE["options_file_keys"]["enable_attention_dp"]["status"] == CONFIRMED


def test_disaggregated_pools_and_router_write_only_checked_keys(tmp_path: Path) -> None:
    result, files = _emit_disaggregated("trtllm-1.2", tmp_path)
    emitted = _emitted_files(list(files.values()))
    check(emitted)
    assert emitted.options["cache_transceiver_config.backend"] == {"DEFAULT"}
    assert emitted.options["disable_overlap_scheduler"] == {True}  # context (prefill) workers only
    assert "DEFAULT" in EVIDENCE["llm_api_values"]["cache_transceiver_config.backend"]
    assert emitted.router_commands  # the router script starts trtllm-serve disaggregated
    stubs = _stub_dir(tmp_path)
    for plan in result.plans:
        script, config = files[f"launch-rank{plan.rank}-router-trtllm-1.2.sh"], tmp_path / f"router-{plan.rank}.yaml"
        nodes = {"PREFILL_NODES": " ".join(f"10.0.1.{i}" for i in range(8)), "DECODE_NODES": " ".join(f"10.0.2.{i}" for i in range(8))}
        run = _run_node(script, 0, stubs, tmp_path / "router.log", STUB_SLEEP_S="0.1", DISAGG_CONFIG=str(config), **nodes)
        assert run.returncode == 0, run.stderr
        keys = {key for key, _ in flatten(yaml.safe_load(config.read_text()))}
        assert keys == set(EVIDENCE["router"]["config_keys"]) and EVIDENCE["router"]["status"] == "recalled"


def test_the_check_refuses_an_unlisted_flag_key_or_value() -> None:
    cases = [
        'trtllm-serve "$MODEL" --tensor_parallel_size 2',
        'trtllm-serve "$MODEL" --backend tensorrt',
        "cat > x <<'YAML'\ncache_transceiver_config:\n  backend: UCX\nYAML\n",
        "cat > x <<'YAML'\nmoe_config:\n  load_balancer: 4\nYAML\n",
    ]
    for text in cases:
        emitted = Emitted()
        emitted.add_text(text)
        with pytest.raises(AssertionError):
            check(emitted)
