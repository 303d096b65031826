"""Engine versions as catalog entries: the newest of each engine family is planned by default,
an older one by its id; every version states whether it runs EP and attention DP."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from guideopt.catalog import catalog_dir, load_catalog
from guideopt.cli import main
from guideopt.costs.capability import moe_layout_reason
from guideopt.errors import CatalogError
from guideopt.model.framework import newest_per_engine, split_version_id
from guideopt.model.request import PlanRequest

CAT = load_catalog()
NEW = {"vllm-0.33": ("vllm", "0.33.0"), "sglang-0.5.23": ("sglang", "0.5.23"), "trtllm-1.2": ("trtllm", "1.2.1")}


def test_new_versions_are_entries_of_their_engine_family() -> None:
    for fw_id, (engine, version) in NEW.items():
        fw = CAT.framework(fw_id)
        assert (fw.calibration_id, fw.version, fw.launch.version) == (engine, version, version)
        assert CAT.framework(engine).version != version  # the old entry is kept


def test_catalog_frameworks_lists_every_version() -> None:
    out = CliRunner().invoke(main, ["catalog", "frameworks", "--json"])
    assert out.exit_code == 0, out.output
    ids = {row["id"] for row in json.loads(out.output)}
    assert set(NEW) | {"vllm", "sglang", "trtllm", "fastgen"} <= ids


def test_any_plans_the_newest_version_of_each_engine_only() -> None:
    req = PlanRequest.model_validate(
        {"model": "m", "workload": {"input_len": 8, "output_len": 8}, "budget": {"usd_per_hour": 1}, "framework": "any"}
    )
    assert req.framework_ids(list(CAT.frameworks)) == ["fastgen", "sglang-0.5.23", "trtllm-1.2", "vllm-0.33"]
    older = req.model_copy(update={"framework": ["vllm", "sglang-0.5.23"]})
    assert older.framework_ids(list(CAT.frameworks)) == ["vllm", "sglang-0.5.23"]


def test_version_ids_split_into_engine_and_version() -> None:
    assert split_version_id("vllm-0.33") == ("vllm", (0, 33))
    assert split_version_id("sglang-0.5.23") == ("sglang", (0, 5, 23))
    assert split_version_id("fastgen") == ("fastgen", ())
    assert newest_per_engine(["vllm", "vllm-0.9", "vllm-0.33", "fastgen"]) == ["fastgen", "vllm-0.33"]


@pytest.fixture
def catalog_copy(tmp_path: Path) -> Path:
    shutil.copytree(catalog_dir(), tmp_path / "catalogs")
    return tmp_path / "catalogs"


def _write_version(root: Path, fw_id: str, engine: str, version: str) -> None:
    data = yaml.safe_load((root / "frameworks" / "vllm-0.33.yaml").read_text())
    data.update({"id": fw_id, "engine": engine, "version": version})
    data["launch"]["version"] = version
    (root / "frameworks" / f"{fw_id}.yaml").write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("fw_id", "engine", "version", "message"),
    [
        ("vllm-0.9", "vllm", "0.9.2", "must be newer than the base entry vllm (0.11.0)"),
        ("vllm-0.40", "sglang", "0.40.0", "needs engine: vllm"),
        ("vllm-0.40", "vllm", "0.41.0", "a version 0.40.x"),
    ],
)
def test_a_version_entry_must_match_its_id_and_be_newer(catalog_copy: Path, fw_id: str, engine: str, version: str, message: str) -> None:
    _write_version(catalog_copy, fw_id, engine, version)
    load_catalog.cache_clear()
    try:
        with pytest.raises(CatalogError, match=re.escape(message)):
            load_catalog(str(catalog_copy))
    finally:
        load_catalog.cache_clear()


def test_every_version_states_its_moe_layouts() -> None:
    for fw in CAT.frameworks.values():
        cap = fw.capabilities
        family = fw.calibration_id
        assert cap.expert_parallel is cap.attention_dp is (family != "fastgen"), fw.id
        assert cap.multi_node_ep is cap.redundant_experts is (family != "fastgen"), fw.id
        assert cap.moe_tp_with_ep is (family in ("sglang", "trtllm")), fw.id
        assert cap.attention_tp_with_dp is (family != "trtllm"), fw.id


def _reason(fw_id: str, **layout: int) -> str | None:
    args = {"attention_dp": 1, "moe_ep": 1, "gpus_per_replica": 8, "gpus_per_node": 8, **layout}
    return moe_layout_reason(CAT.framework(fw_id), **args)


def test_moe_layout_reasons_name_the_engine_version_and_the_fix() -> None:
    assert _reason("vllm-0.33", attention_dp=8, moe_ep=8) is None
    assert _reason("fastgen") is None  # plain TP
    assert "no expert parallelism" in (_reason("fastgen", moe_ep=8) or "")
    assert "no attention data parallelism" in (_reason("fastgen", attention_dp=2) or "")
    assert "moe_ep 8" in (_reason("vllm", moe_ep=4, tp=8, moe_tp=2) or "")
    assert _reason("sglang", moe_ep=4, tp=8, moe_tp=2) is None
    assert "tp 1 with attention_dp 8" in (_reason("trtllm-1.2", attention_dp=4, moe_ep=8, tp=2) or "")
    assert _reason("vllm-0.33", attention_dp=16, moe_ep=16, gpus_per_replica=16) is None
    single_node = CAT.framework("vllm").model_copy(
        update={"capabilities": CAT.framework("vllm").capabilities.model_copy(update={"multi_node_ep": False})}
    )
    reason = moe_layout_reason(single_node, attention_dp=16, moe_ep=16, gpus_per_replica=16, gpus_per_node=8)
    assert reason and "across nodes" in reason and "\n" not in reason
