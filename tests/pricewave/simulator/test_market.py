"""The hidden demand model: strictly decreasing in price, an oracle that beats every nearby price."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricewave.pricing.features import is_holiday
from pricewave.simulator.market import DemandContext, Market
from pricewave.simulator.scenario import load_scenario, parse_scenario

SMALL = Market(load_scenario("small"), seed=3)
DEFAULT = Market(load_scenario("default"), seed=3)
contexts = st.builds(
    DemandContext,
    season_logit=st.floats(-2, 2),
    competitor_price=st.one_of(st.none(), st.floats(0.01, 500)),
)


@settings(max_examples=300, deadline=None)
@given(
    sku_index=st.integers(0, len(DEFAULT.sku_ids) - 1),
    segment=st.sampled_from(sorted(DEFAULT.segments)),
    context=contexts,
    low=st.floats(0.01, 5_000),
    factor=st.floats(1.000001, 10),
)
def test_demand_is_strictly_decreasing_in_price(
    sku_index: int, segment: str, context: DemandContext, low: float, factor: float
) -> None:
    sku = DEFAULT.sku_ids[sku_index]
    at_low = DEFAULT.purchase_probability(segment, sku, low, context)
    at_high = DEFAULT.purchase_probability(segment, sku, low * factor, context)
    assert 0 <= at_high <= at_low <= 1
    if 1e-12 < at_low < 1 - 1e-9:  # outside float saturation the decrease is strict
        assert at_high < at_low


def test_curve_matches_the_scalar_model_and_rejects_bad_prices() -> None:
    sku = SMALL.sku_ids[0]
    context = SMALL.context(sku, SMALL.start_ms)
    prices = np.linspace(0.5, 3, 7) * SMALL.skus[sku].list_price
    for segment in SMALL.segments:
        curve = SMALL.purchase_probability_curve(segment, sku, prices, context)
        scalar = [SMALL.purchase_probability(segment, sku, float(p), context) for p in prices]
        np.testing.assert_allclose(curve, scalar, rtol=1e-12)
        assert np.all(np.diff(curve) < 0)
    with pytest.raises(ValueError, match="positive"):
        SMALL.purchase_probability("bargain", sku, 0.0, context)


@pytest.mark.parametrize("market", [SMALL, DEFAULT], ids=["small", "default"])
@pytest.mark.parametrize("objective", ["margin", "revenue"])
def test_oracle_beats_nearby_and_grid_prices_within_the_guardrails(market: Market, objective: str) -> None:
    rng = random.Random(0)
    for sku in rng.sample(market.sku_ids, min(25, len(market.sku_ids))):
        item = market.skus[sku]
        context = DemandContext(
            season_logit=rng.uniform(-1, 1), competitor_price=item.list_price * rng.uniform(0.7, 1.2)
        )
        for segment in [*market.segments, None]:
            best = market.oracle_price(segment, sku, context, objective)  # type: ignore[arg-type]
            assert item.floor <= best <= item.ceiling
            value = market.expected_value(segment, sku, best, context, objective)  # type: ignore[arg-type]
            nearby = [best * (1 + d) for d in (-0.02, -0.005, -0.001, 0.001, 0.005, 0.02)]
            grid = list(np.linspace(item.floor, item.ceiling, 400))
            for price in nearby + grid:
                if item.floor <= price <= item.ceiling:
                    other = market.expected_value(segment, sku, price, context, objective)  # type: ignore[arg-type]
                    assert value >= other - 1e-9 * max(1.0, abs(other)), (segment, sku, best, price)


def test_guardrail_bounds_respect_cost_margin_and_map() -> None:
    min_margin = DEFAULT.scenario.pricing.min_margin
    with_map = 0
    for item in DEFAULT.skus.values():
        assert item.floor >= item.cost * (1 + min_margin) - 1e-9
        assert item.floor >= item.map_price
        assert item.ceiling >= max(item.floor, item.list_price)
        assert item.list_price > item.cost
        with_map += item.map_price > 0
    assert with_map > 0  # the default scenario has MAP categories


def test_oracle_is_personal_higher_wtp_pays_more() -> None:
    sku = DEFAULT.sku_ids[0]
    context = DemandContext()
    bargain = DEFAULT.oracle_price("bargain", sku, context)
    premium = DEFAULT.oracle_price("premium", sku, context)
    assert premium > bargain
    # Floor binds when the unconstrained optimum lies below it.
    cheap = parse_scenario(
        {
            "name": "cheap",
            "users": {"segments": [{"name": "s", "willingness_to_pay": 0.05, "elasticity": 8}]},
            "competitors": {"names": []},
        }
    )
    market = Market(cheap, seed=0)
    item = market.skus[market.sku_ids[0]]
    assert market.oracle_price("s", item.sku, DemandContext()) == item.floor


def test_true_elasticity_is_the_logit_slope_without_competitors() -> None:
    sku = DEFAULT.sku_ids[1]
    context = DemandContext(competitor_price=None)
    for segment in DEFAULT.segments:
        p, h = DEFAULT.skus[sku].list_price, 1e-5

        def logit(price: float, segment: str = segment) -> float:
            q = DEFAULT.purchase_probability(segment, sku, price, context)
            return math.log(q / (1 - q))

        slope = (logit(p * math.exp(h)) - logit(p * math.exp(-h))) / (2 * h)
        assert slope == pytest.approx(-DEFAULT.true_elasticity(segment, sku), rel=1e-5)
        expected = DEFAULT.segments[segment].elasticity * DEFAULT.skus[sku].elasticity_scale
        assert DEFAULT.true_elasticity(segment, sku) == expected


def test_cheaper_competitors_lower_demand() -> None:
    sku = DEFAULT.sku_ids[2]
    price = DEFAULT.skus[sku].list_price
    alone = DEFAULT.purchase_probability("bargain", sku, price, DemandContext(competitor_price=None))
    undercut = DEFAULT.purchase_probability("bargain", sku, price, DemandContext(competitor_price=price * 0.7))
    assert undercut < alone


def test_market_is_deterministic_for_a_seed() -> None:
    scenario = load_scenario("small")
    one, two, other = Market(scenario, seed=5), Market(scenario, seed=5), Market(scenario, seed=6)
    assert one.skus == two.skus
    assert [one.segment_of(i) for i in range(60)] == [two.segment_of(i) for i in range(60)]
    assert one.skus != other.skus


def test_segments_follow_shares_and_users_have_pseudonymous_keys() -> None:
    counts = {name: 0 for name in DEFAULT.segments}
    for index in range(DEFAULT.scenario.users.n_users):
        counts[DEFAULT.segment_of(index)] += 1
    shares = {s.name: s.share for s in DEFAULT.scenario.users.segments}
    total = sum(shares.values())
    for name, count in counts.items():
        assert count / DEFAULT.scenario.users.n_users == pytest.approx(shares[name] / total, abs=0.02)
    user = DEFAULT.user(7)
    assert len(user.user_key) == 32 and user.raw_id not in user.user_key


@settings(max_examples=40, deadline=None)
@given(
    holidays=st.lists(
        st.tuples(st.floats(0, 30, allow_nan=False), st.floats(0.001, 5, allow_nan=False)), min_size=1, max_size=4
    ),
    clock_start_ms=st.integers(946_684_800_000, 4_102_444_800_000),
    offsets_ms=st.lists(st.integers(0, 40 * 86_400_000), min_size=1, max_size=50),
)
def test_the_holiday_calendar_says_what_the_market_applies(
    holidays: list[tuple[float, float]], clock_start_ms: int, offsets_ms: list[int]
) -> None:
    """is_holiday (serving and training) reads the calendar; the simulated market, its start_day offsets."""
    spec = [{"name": f"h{n}", "start_day": day, "duration_days": days} for n, (day, days) in enumerate(holidays)]
    scenario = parse_scenario(
        {"name": "cal", "catalog": {"n_skus": 1}, "users": {"n_users": 1}, "seasonality": {"holidays": spec}}
    )
    start = datetime.fromtimestamp(clock_start_ms / 1000, tz=UTC)  # as the simulator starts a live run
    market = Market(scenario.model_copy(update={"clock": scenario.clock.model_copy(update={"start": start})}))
    calendar = market.scenario.holiday_calendar()
    edges = [p.start_ms + d for p in calendar for d in (-1, 0)] + [p.end_ms + d for p in calendar for d in (-1, 0)]
    times = np.asarray([clock_start_ms + o for o in offsets_ms] + edges, dtype=np.int64)
    expected = [market.holiday_at(int(t)) is not None for t in times]
    assert is_holiday(calendar, times).tolist() == expected


def test_holidays_raise_traffic_and_competitors_promote_and_run_out() -> None:
    rush = Market(load_scenario("holiday_rush"), seed=1)
    day = 24 * 3_600_000
    noon = 12 * 3_600_000
    assert rush.holiday_at(rush.start_ms + day + noon) is not None  # black friday
    assert rush.holiday_at(rush.start_ms + noon) is None
    assert rush.traffic_multiplier(rush.start_ms + day + noon) > 2 * rush.traffic_multiplier(rush.start_ms + noon)
    rng = random.Random(0)
    t = rush.start_ms
    for _ in range(5_000):
        t += 60_000
        offer = rush.observe_competitor(rng, t)
        assert offer is not None and offer.price(t) > 0
    assert any(o.promo_until_ms > rush.start_ms for o in rush.competitor_offers)
    assert any(o.stockout_until_ms > rush.start_ms for o in rush.competitor_offers)


def test_stock_runs_out_and_is_replenished() -> None:
    market = Market(load_scenario("small"), seed=0)
    sku = market.sku_ids[0]
    initial = market.stock[sku]
    assert market.take_stock(sku, initial + 5) == initial
    assert market.stock[sku] == 0 and market.take_stock(sku, 1) == 0
    market.replenish()
    assert market.stock[sku] == initial
