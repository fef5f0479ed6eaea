"""The scenario model: shipped files load, invalid ones fail with one line naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pricewave.errors import ConfigError
from pricewave.simulator import scenario as scenario_module
from pricewave.simulator.scenario import CatalogSpec, Scenario, load_scenario, parse_scenario, shipped_scenarios

README = Path(scenario_module.__file__).resolve().parents[1] / "scenarios" / "README.md"


def test_four_scenarios_are_shipped_and_load() -> None:
    assert shipped_scenarios() == ["default", "holiday_rush", "price_response", "small"]
    for name in shipped_scenarios():
        assert load_scenario(name).name == name


def test_small_is_tiny_and_holiday_rush_has_holidays_and_promotions() -> None:
    small, default, rush = (load_scenario(n) for n in ("small", "default", "holiday_rush"))
    assert small.catalog.n_skus <= 20 and small.users.n_users <= 100
    assert default.catalog.n_skus > small.catalog.n_skus
    assert len(rush.seasonality.holidays) >= 2
    assert max(h.demand_multiplier for h in rush.seasonality.holidays) > 1
    assert rush.competitors.promo_probability > default.competitors.promo_probability
    assert rush.competitors.stockout_probability > default.competitors.stockout_probability


def test_a_name_alone_is_a_valid_scenario_with_defaults() -> None:
    scenario = parse_scenario({"name": "mine"})
    assert scenario.catalog == CatalogSpec()
    assert scenario.users.segments and scenario.catalog.categories
    assert scenario.clock.start_ms > 0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "name"),
        ({"name": "bad name!"}, "name"),
        ({"name": "x", "users": {"n_users": 0}}, "users.n_users"),
        ({"name": "x", "users": {"segments": []}}, "users.segments"),
        ({"name": "x", "users": {"segments": [{"name": "a", "elasticity": 0}]}}, "users.segments.0.elasticity"),
        ({"name": "x", "users": {"segments": [{"name": "a"}, {"name": "a"}]}}, "users.segments"),
        ({"name": "x", "catalog": {"bogus": 1}}, "catalog.bogus"),
        (
            {"name": "x", "catalog": {"categories": [{"name": "c", "cost_min": 9, "cost_max": 1}]}},
            "catalog.categories.0",
        ),
        ({"name": "x", "catalog": {"initial_stock_min": 10, "initial_stock_max": 1}}, "catalog"),
        ({"name": "x", "faults": {"late_share": 0.6, "malformed_share": 0.6}}, "faults"),
        ({"name": "x", "faults": {"malformed_kinds": ["gibberish"]}}, "faults.malformed_kinds.0"),
        ({"name": "x", "pricing": {"ceiling_ratio": 0.5}}, "pricing.ceiling_ratio"),
        (
            {"name": "x", "seasonality": {"holidays": [{"name": "h", "start_day": -1}]}},
            "seasonality.holidays.0.start_day",
        ),
        ({"name": "x", "competitors": {"names": ["a", "a"]}}, "competitors.names"),
        ({"name": "x", "clock": {"start": "yesterday-ish"}}, "clock.start"),
    ],
)
def test_invalid_scenarios_name_the_field_on_one_line(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data, "test.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert f"field {field} " in message or f"field {field}:" in message, message
    assert "test.yaml" in message


def test_files_round_trip_and_file_errors_are_config_errors(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text(yaml.safe_dump({"name": "mine", "catalog": {"n_skus": 3}}))
    assert load_scenario(good).catalog.n_skus == 3
    assert load_scenario(str(good)).name == "mine"

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("name: x\nusers:\n  n_users: -5\n")
    cases: dict[str | Path, str] = {
        tmp_path / "missing.yaml": "does not exist",
        broken: "not valid YAML at line",
        listed: "must hold a mapping",
        invalid: "users.n_users",
        "no_such_scenario": "unknown scenario 'no_such_scenario'",
    }
    for source, expected in cases.items():
        with pytest.raises(ConfigError, match=expected) as caught:
            load_scenario(source)
        assert "\n" not in str(caught.value)


def _fields(model: type[BaseModel], seen: set[str]) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        assert info.description, f"{model.__name__}.{name} has no description"
        for candidate in (*getattr(info.annotation, "__args__", ()), info.annotation):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate.__name__ not in seen:
                seen.add(candidate.__name__)
                names |= _fields(candidate, seen)
    return names


def test_every_field_is_described_and_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = sorted(name for name in _fields(Scenario, set()) if f"`{name}`" not in text)
    assert not missing, f"scenarios/README.md does not document {missing}"


def test_the_price_response_scenario_segments_differ_only_in_their_price_response() -> None:
    segments = [segment.model_dump() for segment in load_scenario("price_response").users.segments]
    price_response = {"name", "willingness_to_pay", "elasticity"}
    rest = [{k: v for k, v in segment.items() if k not in price_response} for segment in segments]
    assert len(segments) == 3 and all(other == rest[0] for other in rest)
    assert len({s["willingness_to_pay"] for s in segments}) == 3 and len({s["elasticity"] for s in segments}) == 3
