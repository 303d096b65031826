"""The catalog loader cross-checks ids: every engine and every link class a GPU uses has a
calibration entry, else loading fails with one CatalogError naming the file and the id
(instead of a KeyError traceback at predict time). Each case edits a temporary copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import CATALOG_DIR

from guideopt.catalog import load_catalog
from guideopt.errors import CatalogError


@pytest.fixture
def catalog_copy(tmp_path: Path) -> Path:
    root = tmp_path / "catalogs"
    shutil.copytree(CATALOG_DIR, root)
    return root


def edit_calibration(root: Path, section: str, drop: str) -> None:
    path = root / "calibration.yaml"
    data = yaml.safe_load(path.read_text())
    del data[section][drop]
    path.write_text(yaml.safe_dump(data))


def load_error(root: Path) -> str:
    with pytest.raises(CatalogError) as info:
        load_catalog(str(root))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_bundled_catalog_passes_the_cross_checks():
    cat = load_catalog()
    assert {fw.calibration_id for fw in cat.frameworks.values()} <= set(cat.calibration.frameworks)
    assert {g.link.value for g in cat.gpus.values()} | {"pcie"} <= set(cat.calibration.links)


def test_a_copy_loads_before_it_is_edited(catalog_copy):
    assert load_catalog(str(catalog_copy)).frameworks


def test_an_engine_without_calibration_is_a_catalog_error(catalog_copy):
    edit_calibration(catalog_copy, "frameworks", "sglang")
    message = load_error(catalog_copy)
    assert str(catalog_copy / "calibration.yaml") in message
    assert "frameworks: no entry for engine 'sglang'" in message and "fit_calibration.py" in message


def test_a_new_engine_file_without_calibration_is_a_catalog_error(catalog_copy):
    data = yaml.safe_load((catalog_copy / "frameworks" / "vllm.yaml").read_text())
    data["id"] = "newengine"
    (catalog_copy / "frameworks" / "newengine.yaml").write_text(yaml.safe_dump(data))
    assert "no entry for engine 'newengine'" in load_error(catalog_copy)


def test_a_gpu_link_class_without_calibration_is_a_catalog_error(catalog_copy):
    edit_calibration(catalog_copy, "links", "xgmi")
    message = load_error(catalog_copy)
    assert "links: no entry for link class 'xgmi', used by gpus/mi250.yaml" in message


def test_pcie_is_required_as_every_gpus_fallback(catalog_copy):
    edit_calibration(catalog_copy, "links", "pcie")
    assert "links: no entry for link class 'pcie', used by every GPU's fallback link" in load_error(catalog_copy)
