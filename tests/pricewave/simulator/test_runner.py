"""The simulator in process: deterministic, schema-valid, faulty as configured, closed loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricewave.cli import main
from pricewave.config import Settings, load_settings
from pricewave.schemas import check_event, load_schema, validate_record
from pricewave.simulator.pricebook import PriceBook
from pricewave.simulator.runner import Simulator
from pricewave.simulator.scenario import FaultsSpec, load_scenario, parse_scenario

SETTINGS = load_settings(env={})
SMALL = load_scenario("small")
TEXTS = ["Great coffee, would buy again.", "Stale and overpriced."]


def _simulator(seed: int = 1, **kwargs: Any) -> Simulator:
    return Simulator(SMALL, SETTINGS, seed=seed, review_texts=TEXTS, **kwargs)


def _wire(sim: Simulator, n: int) -> list[tuple[str, bytes, bytes]]:
    return [(e.name, e.key, e.value) for e in sim.iter_events(max_events=n)]


def test_same_seed_same_events_other_seed_different() -> None:
    first, second = _wire(_simulator(seed=11), 3_000), _wire(_simulator(seed=11), 3_000)
    assert first == second
    assert _wire(_simulator(seed=12), 3_000) != first


def test_every_clean_event_is_valid_and_every_malformed_one_is_not() -> None:
    faults = FaultsSpec(out_of_order_share=0.1, late_share=0.05, duplicate_share=0.05, malformed_share=0.05)
    sim = _simulator(seed=2, faults=faults)
    seen: dict[str, int] = {}
    for emission in sim.iter_events(max_events=6_000):
        record, reason = check_event(emission.name, emission.value)
        if emission.malformed is None:
            assert reason is None and record is not None, (emission, reason)
            assert record == emission.record
            validate_record(emission.name, record)
            assert emission.key == record["sku"].encode()
            assert set(record) <= set(load_schema(emission.name).field_names)  # never a hidden segment
        else:
            assert reason is not None, emission
        seen[emission.name] = seen.get(emission.name, 0) + 1
    assert set(seen) == {"click_event", "competitor_price", "review"}
    assert sim.summary.malformed > 0 and len(sim.summary.malformed_kinds) >= 5


def test_summary_fault_shares_and_counts_match_the_scenario() -> None:
    faults = FaultsSpec(out_of_order_share=0.1, late_share=0.04, duplicate_share=0.06, malformed_share=0.03)
    sim = _simulator(seed=3, faults=faults)
    emissions = list(sim.iter_events(max_events=20_000))
    summary = sim.summary
    sources = sum(summary.source_events.values())
    assert summary.messages == len(emissions) == 20_000
    assert summary.messages == sources + summary.duplicates or summary.messages == sources + summary.duplicates - 1
    assert summary.duplicates / sources == pytest.approx(0.06, abs=0.01)
    assert summary.malformed / sources == pytest.approx(0.03, abs=0.008)
    assert summary.late / sources == pytest.approx(0.04, abs=0.008)
    assert summary.out_of_order / sources == pytest.approx(0.10, abs=0.012)
    assert summary.purchases == summary.event_types["purchase"]
    assert summary.views == summary.event_types["view"] > 0
    assert summary.revenue > summary.margin > 0
    assert summary.units >= summary.purchases


def test_on_time_events_follow_the_simulated_clock_and_ids_are_unique() -> None:
    sim = _simulator(seed=4)
    last = 0
    ids = []
    for emission in sim.iter_events(max_events=5_000):
        if emission.record is None or emission.duplicate:
            continue
        ids.append(emission.record.get("event_id", emission.record.get("review_id")))
        if emission.timing == "on_time":
            assert emission.record["event_time"] >= last
            last = emission.record["event_time"]
    assert len(ids) == len(set(ids)) > 4_000
    assert last > SMALL.clock.start_ms


def _purchases_at(multiplier: float, seed: int = 5) -> tuple[int, float]:
    book = PriceBook()
    sim = _simulator(
        seed=seed,
        pricebook=book,
        faults=FaultsSpec(out_of_order_share=0, late_share=0, duplicate_share=0, malformed_share=0),
    )
    for item in sim.market.skus.values():
        book.set_sku_price(item.sku, item.list_price * multiplier)
    list(sim.iter_events(max_events=8_000))
    assert sim.summary.price_sources["sku"] == sim.summary.views
    return sim.summary.purchases, sim.summary.revenue


def test_closed_loop_raising_the_price_gives_fewer_purchases() -> None:
    low, _ = _purchases_at(0.9)
    mid, _ = _purchases_at(1.0)
    high, _ = _purchases_at(1.4)
    assert low > mid > high
    assert high < 0.7 * low


def test_fresh_offers_win_over_sku_prices_and_expire() -> None:
    sim = _simulator(seed=6)
    user = sim.market.user(0)
    sku = sim.market.sku_ids[0]
    sim.pricebook.set_sku_price(sku, 5.0)
    sim.pricebook.set_offer(user.user_key, sku, 4.0, event_time=SMALL.clock.start_ms)
    ttl = int(SMALL.pricing.offer_ttl_s * 1000)
    price_for = sim.pricebook.price_for
    assert price_for(user.user_key, sku, 9.0, SMALL.clock.start_ms + ttl) == (4.0, "offer")
    assert price_for(user.user_key, sku, 9.0, SMALL.clock.start_ms + ttl + 1) == (5.0, "sku")
    assert price_for(sim.market.user(1).user_key, sku, 9.0, 0) == (5.0, "sku")
    assert price_for(user.user_key, sim.market.sku_ids[1], 9.0, 0) == (9.0, "list")
    # an older decision never overwrites a newer one
    assert not sim.pricebook.apply_decision(
        {"kind": "offer", "sku": sku, "user_key": user.user_key, "price": 1.0, "event_time": SMALL.clock.start_ms - 1}
    )
    assert not sim.pricebook.set_sku_price(sku, float("nan"))


def test_offers_reach_the_shown_price() -> None:
    sim = _simulator(seed=7)
    for index in range(SMALL.users.n_users):
        for sku in sim.market.sku_ids:
            sim.pricebook.set_offer(sim.market.user(index).user_key, sku, 1.23)
    clicks = [e.record for e in sim.iter_events(max_events=500) if e.name == "click_event" and e.record]
    assert clicks and all(record["price_seen"] == 1.23 for record in clicks)
    assert sim.summary.price_sources["offer"] == sim.summary.views


def test_oracle_regret_is_zero_at_oracle_prices_and_positive_at_list_prices() -> None:
    sim = _simulator(seed=8)
    list(sim.iter_events(max_events=3_000))
    assert 0 < sim.summary.regret < 1
    assert sim.summary.oracle_margin >= sim.summary.sku_oracle_margin > sim.summary.expected_margin


def test_write_history_writes_parquet_per_event_type(tmp_path: Path) -> None:
    sim = _simulator(seed=9)
    paths = sim.write_history(tmp_path / "history", n_events=3_000, progress=False)
    assert {"click_event", "competitor_price", "review", "exposures", "catalog", "summary"} <= set(paths)
    clicks = pd.read_parquet(paths["click_event"])
    exposures = pd.read_parquet(paths["exposures"])
    reviews = pd.read_parquet(paths["review"])
    catalog = pd.read_parquet(paths["catalog"])
    total = len(clicks) + len(pd.read_parquet(paths["competitor_price"])) + len(reviews)
    assert total == 3_000
    assert len(exposures) == (clicks["event_type"] == "view").sum()
    assert exposures["purchased"].sum() >= (clicks["event_type"] == "purchase").sum() > 0
    assert set(exposures["price_source"]) == {"list"}
    assert len(catalog) == SMALL.catalog.n_skus
    for row in catalog.to_dict("records"):
        row["map_price"] = None if pd.isna(row["map_price"]) else row["map_price"]
        validate_record("sku_catalog", {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    first = {k: v for k, v in clicks.iloc[0].to_dict().items() if not pd.isna(v)}
    validate_record("click_event", {k: (v.item() if hasattr(v, "item") else v) for k, v in first.items()})
    assert json.loads(paths["summary"].read_text())["purchases"] == sim.summary.purchases


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    categories = []
    for name in draw(st.lists(names, min_size=1, max_size=3, unique=True)):
        cost_min = draw(st.floats(0.01, 500))
        categories.append(
            {
                "name": name,
                "weight": draw(st.floats(0.1, 5)),
                "cost_min": cost_min,
                "cost_max": cost_min * draw(st.floats(1, 5)),
                "markup_min": 1.0,
                "markup_max": draw(st.floats(1, 3)),
                "map_ratio": draw(st.floats(0, 1)),
                "quality_mean": draw(st.floats(0, 1)),
            }
        )
    segments = [
        {
            "name": name,
            "share": draw(st.floats(0.1, 5)),
            "willingness_to_pay": draw(st.floats(0.1, 5)),
            "elasticity": draw(st.floats(0.1, 10)),
            "base_utility": draw(st.floats(-6, 3)),
            "competitor_weight": draw(st.floats(0, 3)),
            "views_per_session": draw(st.floats(1, 10)),
            "search_share": draw(st.floats(0, 1)),
        }
        for name in draw(st.lists(names, min_size=1, max_size=3, unique=True))
    ]
    shares = draw(st.lists(st.floats(0, 0.3), min_size=4, max_size=4))
    return {
        "name": draw(names),
        "catalog": {
            "n_skus": draw(st.integers(1, 30)),
            "categories": categories,
            "initial_stock_min": 0,
            "initial_stock_max": draw(st.integers(0, 50)),
            "replenish_interval_h": draw(st.floats(0.01, 48)),
        },
        "pricing": {"min_margin": draw(st.floats(0, 1)), "ceiling_ratio": draw(st.floats(1, 3))},
        "users": {
            "n_users": draw(st.integers(1, 50)),
            "sessions_per_hour": draw(st.floats(1, 1e5)),
            "think_time_s": draw(st.floats(0.1, 600)),
            "segments": segments,
        },
        "competitors": {
            "names": draw(st.lists(names, max_size=3, unique=True)),
            "updates_per_hour": draw(st.floats(0, 1e4)),
            "promo_probability": draw(st.floats(0, 1)),
            "stockout_probability": draw(st.floats(0, 1)),
        },
        "seasonality": {
            "daily_amplitude": draw(st.floats(0, 0.9)),
            "holidays": [
                {"name": "h", "start_day": 0, "duration_days": 1, "demand_multiplier": draw(st.floats(0.5, 5))}
            ],
        },
        "reviews": {"probability_per_purchase": draw(st.floats(0, 1))},
        "faults": dict(
            zip(["out_of_order_share", "late_share", "duplicate_share", "malformed_share"], shares, strict=True)
        ),
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=scenarios(), seed=st.integers(0, 2**32))
def test_generated_valid_scenarios_run_and_emit_valid_events(data: dict[str, Any], seed: int) -> None:
    scenario = parse_scenario(data)
    sim = Simulator(scenario, SETTINGS, seed=seed, review_texts=TEXTS)
    emissions = list(sim.iter_events(max_events=300))
    assert len(emissions) == 300
    for emission in emissions:
        _, reason = check_event(emission.name, emission.value)
        assert (reason is None) == (emission.malformed is None), (emission, reason)
    for sku in sim.market.skus.values():
        context = sim.market.context(sku.sku, sim.now_ms)
        for segment in sim.market.segments:
            assert sku.floor <= sim.market.oracle_price(segment, sku.sku, context) <= sku.ceiling


def test_cli_writes_history_and_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hist"
    code = main(
        ["simulate", "--scenario", "small", "--max-events", "500", "--history-out", str(out), "--json", "--no-progress"]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["source_events"]["click_event"] > 0
    assert (out / "click_event.parquet").is_file()

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nusers:\n  n_users: 0\n")
    for argv, message in [
        (["simulate", "--scenario", str(bad)], "users.n_users"),
        (["simulate", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["simulate", "--scenario", "small", "--history-out", str(out)], "--max-events"),
        (
            [
                "simulate",
                "--scenario",
                "small",
                "--late-share",
                "0.7",
                "--malformed-share",
                "0.7",
                "--history-out",
                str(out),
                "--max-events",
                "5",
            ],
            "must not exceed 1",
        ),
    ]:
        assert main(argv) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    for argv in (["simulate", "--rate", "-3"], ["simulate", "--max-events", "0"], ["simulate", "--late-share", "2"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code != 0
        assert capsys.readouterr().err.count("\n") == 1


def test_settings_topics_route_events(tmp_path: Path) -> None:
    topics = SETTINGS.topics.model_copy(update={"clicks": "c1", "competitor_prices": "c2", "reviews": "c3"})
    custom: Settings = SETTINGS.model_copy(update={"topics": topics})
    sim = Simulator(SMALL, custom, seed=1, review_texts=TEXTS)
    assert [sim.topic_for(n) for n in ("click_event", "competitor_price", "review")] == ["c1", "c2", "c3"]


def test_a_vanishing_rate_means_never_not_an_overflow() -> None:
    """A rate so small that its exponential gap overflows (Hypothesis found 2.2e-311 competitor
    updates per hour) schedules the next event a century away instead of crashing the run."""
    import random

    gap = Simulator._exp_ms(random.Random(0), 2.225073858507e-311 / 3_600_000)
    assert gap == 100 * 365 * 24 * 3_600_000
    assert Simulator._exp_ms(random.Random(0), 1.0) >= 1


def test_a_rate_below_one_float_per_millisecond_is_no_competitor_update() -> None:
    """5e-324 updates per hour is 0 per millisecond in floats (Hypothesis found the crash): no update."""
    competitors = SMALL.competitors.model_copy(update={"updates_per_hour": 5e-324})
    scenario = SMALL.model_copy(update={"competitors": competitors})
    names = {
        event.name for event in Simulator(scenario, SETTINGS, seed=1, review_texts=TEXTS).iter_events(max_events=500)
    }
    assert "click_event" in names and "competitor_price" not in names
