"""Price tiers (issue 20 part 4): ``--prices SET:TIER`` picks one tier of a price set, the
bundled tier sets (``spot``, ``reserved_1y``) hold the cheapest such price per GPU, and the
default stays on-demand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import LLAMA2_7B

from guideopt.catalog import load_price_set, price_set_names
from guideopt.cli import main
from guideopt.errors import CatalogError
from guideopt.model.gpu import PriceSet, PriceTier

PLAN = ["plan", "--model", LLAMA2_7B, "--budget", "40", "--input-len", "512", "--output-len", "256", "--json"]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _plan_usd(*args: str) -> list[tuple[dict[str, int], float]]:
    out = json.loads(run(*PLAN, *args).stdout)
    return [(p["gpu_counts"], p["usd_per_hour"]) for p in out["plans"]]


def test_the_default_tier_is_on_demand() -> None:
    nebius = load_price_set("nebius")
    assert nebius.tier is PriceTier.ON_DEMAND and nebius.prices()["h100-sxm"].usd_per_hour == 2.95
    assert load_price_set("nebius:on_demand") == nebius
    assert {"spot", "reserved_1y"} <= set(price_set_names())


def test_a_tier_narrows_the_set_to_its_prices() -> None:
    spot = load_price_set("nebius:spot")
    assert spot.tier is PriceTier.SPOT and spot.name == "nebius:spot"
    assert {g: p.usd_per_hour for g, p in spot.prices().items()} == {"b200": 2.90, "h100-sxm": 1.25, "h200-sxm": 1.45}
    blocks = load_price_set("aws:capacity_block").prices()
    assert blocks["h100-sxm"].usd_per_hour == 4.916 and "l40s" not in blocks
    cheapest = load_price_set("spot")
    assert cheapest.tier is PriceTier.SPOT and cheapest.prices()["h100-sxm"].usd_per_hour < spot.prices()["h100-sxm"].usd_per_hour
    assert all(p.source for p in cheapest.prices().values())


def test_a_missing_tier_is_one_line_naming_what_the_set_has() -> None:
    with pytest.raises(CatalogError, match=r"prices: 'lambda' has no spot prices \(it has on_demand; see catalogs/prices/\)"):
        load_price_set("lambda:spot")
    result = run(*PLAN, "--prices", "aws:reserved_3y")
    assert result.exit_code == 1 and "--prices" in result.stderr and "on_demand, reserved_1y, capacity_block" in result.stderr


def test_the_tier_changes_the_plans_price() -> None:
    on_demand = load_price_set("nebius").prices()
    spot = load_price_set("nebius:spot").prices()
    for prices, source in ((on_demand, "nebius"), (spot, "nebius:spot")):
        plans = _plan_usd("--gpu", "h100-sxm", "--prices", source)
        assert plans
        for counts, usd in plans:
            assert usd == pytest.approx(sum(n * prices[g].usd_per_hour for g, n in counts.items()), abs=1e-3)
    one_gpu = ("--gpu", "h100-sxm", "--max-gpus", "1", "--prices")
    assert _plan_usd(*one_gpu, "nebius")[0] == ({"h100-sxm": 1}, 2.95)
    assert _plan_usd(*one_gpu, "nebius:spot")[0] == ({"h100-sxm": 1}, 1.25)


def test_a_users_file_may_hold_tiers(tmp_path: Path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text("gpus: {l4: 0.5}\ntiers:\n  spot: {l4: 0.2}\n")
    assert load_price_set(str(own)).prices()["l4"].usd_per_hour == 0.5
    assert load_price_set(f"{own}:spot").prices()["l4"].usd_per_hour == 0.2
    plans = _plan_usd("--prices", f"{own}:spot")
    assert plans and all(usd == pytest.approx(0.2 * counts["l4"], abs=1e-3) for counts, usd in plans)
    own.write_text("gpus: {l4: 0.5}\ntiers:\n  spot: {h100: 0.2}\n")
    with pytest.raises(CatalogError, match="did you mean 'h100-"):
        load_price_set(str(own))


def test_the_schema_is_strict() -> None:
    with pytest.raises(ValueError, match="own tier"):
        PriceSet.model_validate({"gpus": {"l4": 1}, "tiers": {"on_demand": {"l4": 1}}})
    with pytest.raises(ValueError):
        PriceSet.model_validate({"gpus": {"l4": 1}, "tiers": {"weekly": {"l4": 1}}})
    assert PriceTier.split_source("aws:spot") == ("aws", PriceTier.SPOT)
    assert PriceTier.split_source("C:/prices.yaml") == ("C:/prices.yaml", None)
    assert PriceTier.split_source("spot") == ("spot", None)
