"""The offline feature frames against naive, obviously-correct loops over a simulated history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricewave.config import load_settings
from pricewave.feature_views import (
    shopper_profile_frame,
    sku_competition_frame,
    sku_demand_frame,
    sku_review_frame,
    user_session_frame,
)
from pricewave.feature_views.sku_competition import COLUMNS as COMPETITION_COLUMNS
from pricewave.feature_views.sku_demand import COLUMNS as DEMAND_COLUMNS
from pricewave.feature_views.sku_review_summary import COLUMNS as REVIEW_COLUMNS
from pricewave.feature_views.user_session import COLUMNS as SESSION_COLUMNS
from pricewave.pricing.features import FEATURE_NAMES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from pricewave.schemas import load_schema
from pricewave.simulator.runner import Simulator
from pricewave.simulator.scenario import FaultsSpec, load_scenario

MIN = 60_000


@pytest.fixture(scope="module")
def history() -> dict[str, pd.DataFrame]:
    """About 40 simulated minutes of clean `small` history, with duplicated click events."""
    no_faults = FaultsSpec(out_of_order_share=0, late_share=0, duplicate_share=0, malformed_share=0)
    sim = Simulator(load_scenario("small"), load_settings(env={}), seed=3, faults=no_faults, review_texts=["ok"])
    rows: dict[str, list[dict]] = {"click_event": [], "competitor_price": [], "review": []}
    for emission in sim.iter_events(duration_s=2400):
        assert emission.record is not None
        rows[emission.name].append(emission.record)
    frames = {name: pd.DataFrame(records) for name, records in rows.items()}
    clicks = frames["click_event"]
    frames["click_event"] = pd.concat([clicks, clicks.iloc[::7]], ignore_index=True)  # replayed duplicates
    return frames


def _naive_demand(clicks: pd.DataFrame, sku: str, end: int, horizon_ms: int) -> dict[str, float]:
    clicks = clicks.drop_duplicates("event_id")
    window = clicks[(clicks.sku == sku) & (clicks.event_time >= end - horizon_ms) & (clicks.event_time < end)]
    counts = window.event_type.value_counts()
    views = int(counts.get("view", 0))
    return {
        "views": views,
        "clicks": int(counts.get("click", 0)),
        "carts": int(counts.get("add_to_cart", 0)),
        "purchases": int(counts.get("purchase", 0)),
        "unique_users": window[window.event_type == "view"].user_key.nunique(),
        "conversion": counts.get("purchase", 0) / max(views, 1),
        "any": len(window),
    }


def test_columns_match_the_feature_view_schemas() -> None:
    for columns, schema in (
        (DEMAND_COLUMNS, "sku_demand"),
        (COMPETITION_COLUMNS, "sku_competition"),
        (SESSION_COLUMNS, "user_session"),
        (REVIEW_COLUMNS, "sku_review_summary"),
    ):
        assert list(columns) == load_schema(schema).field_names
    model_inputs = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS) | set(FEATURE_NAMES)
    produced = set(DEMAND_COLUMNS) | set(COMPETITION_COLUMNS) | set(SESSION_COLUMNS) | set(REVIEW_COLUMNS)
    # every demand, competition, review and session input of the model is produced here
    wanted = {
        "views_5m", "carts_5m", "purchases_5m", "conversion_5m", "views_1h", "purchases_1h", "conversion_1h",
        "competitor_min_price", "competitor_offers", "competitor_staleness_s", "sentiment", "mean_rating",
        "review_count", "recent_views", "recent_carts", "mean_price_seen", "recency_s",
    }  # fmt: skip
    assert wanted <= produced & model_inputs


def test_demand_windows_match_a_naive_count(history: dict[str, pd.DataFrame]) -> None:
    clicks = history["click_event"]
    frame = sku_demand_frame(clicks)
    assert list(frame.columns) == list(DEMAND_COLUMNS)
    assert (frame.event_time % MIN == 0).all()
    assert not frame.duplicated(["sku", "event_time"]).any()
    rng = np.random.default_rng(0)
    for i in rng.choice(len(frame), size=60, replace=False):
        row = frame.iloc[i]
        short = _naive_demand(clicks, row.sku, row.event_time, 5 * MIN)
        long = _naive_demand(clicks, row.sku, row.event_time, 60 * MIN)
        for name in ("views", "clicks", "carts", "purchases", "unique_users"):
            assert row[f"{name}_5m"] == short[name], (name, row.to_dict())
            assert row[f"{name}_1h"] == long[name], (name, row.to_dict())
        assert row.conversion_5m == pytest.approx(short["conversion"])
        assert row.conversion_1h == pytest.approx(long["conversion"])
    # exactly the non-empty aligned windows: one per (sku, end) with an event in the hour before
    unique = clicks.drop_duplicates("event_id")
    expected = set()
    for sku, t in zip(unique.sku, unique.event_time, strict=True):
        bucket = t // MIN
        expected |= {(sku, (bucket + k) * MIN) for k in range(1, 61)}
    assert set(zip(frame.sku, frame.event_time, strict=True)) == expected


def test_demand_at_requested_window_ends(history: dict[str, pd.DataFrame]) -> None:
    clicks = history["click_event"]
    end = int(clicks.event_time.min()) + 17 * MIN + 123  # not aligned: any end works
    frame = sku_demand_frame(clicks, window_ends=[end])
    assert set(frame.event_time) == {end}
    for row in frame.itertuples():
        assert row.views_1h == _naive_demand(clicks, row.sku, end, 60 * MIN)["views"]
        assert row.unique_users_5m == _naive_demand(clicks, row.sku, end, 5 * MIN)["unique_users"]
    active = clicks[(clicks.event_time < end)].sku.unique()
    assert set(frame.sku) == set(active)


def test_competition_takes_the_latest_in_stock_quote_per_competitor(history: dict[str, pd.DataFrame]) -> None:
    prices = history["competitor_price"]
    clicks = history["click_event"]
    frame = sku_competition_frame(prices, our_prices=clicks)
    assert list(frame.columns) == list(COMPETITION_COLUMNS)
    rng = np.random.default_rng(1)
    for i in rng.choice(len(frame), size=60, replace=False):
        row = frame.iloc[i]
        end = row.event_time
        window = prices[(prices.sku == row.sku) & (prices.event_time >= end - 5 * MIN) & (prices.event_time < end)]
        latest = window.sort_values("event_time", kind="stable").groupby("competitor").tail(1)
        live = latest[latest.in_stock]
        assert row.competitor_offers == len(live)
        assert row.competitor_min_price == pytest.approx(live.price.min())
        assert row.competitor_median_price == pytest.approx(live.price.median())
        assert row.competitor_staleness_s == pytest.approx((end - live.event_time.min()) / 1000)
        ours = clicks[(clicks.sku == row.sku) & (clicks.event_time < end)].sort_values("event_time", kind="stable")
        if len(ours):
            expected_gap = (ours.price_seen.iloc[-1] - live.price.min()) / live.price.min()
            assert row.competitor_gap == pytest.approx(expected_gap)
        else:
            assert np.isnan(row.competitor_gap)


def test_session_counts_the_last_30_minutes_of_the_user(history: dict[str, pd.DataFrame]) -> None:
    clicks = history["click_event"]
    frame = user_session_frame(clicks)
    assert list(frame.columns) == list(SESSION_COLUMNS)
    unique = clicks.drop_duplicates("event_id")
    assert len(frame) == unique.event_type.isin(["view", "add_to_cart"]).sum()
    rng = np.random.default_rng(2)
    for i in rng.choice(len(frame), size=60, replace=False):
        row = frame.iloc[i]
        mine = unique[(unique.user_key == row.user_key) & (unique.event_time <= row.event_time)]
        recent = mine[mine.event_time >= row.event_time - 30 * MIN]  # both ends in, as Flink's RANGE window
        views = recent[recent.event_type == "view"]
        assert row.recent_views == len(views)
        assert row.recent_carts == (recent.event_type == "add_to_cart").sum()
        assert row.mean_price_seen == pytest.approx(views.price_seen.mean() if len(views) else 0.0)
        assert row.dwell_s == pytest.approx((row.event_time - recent.event_time.min()) / 1000)
        before = mine[mine.event_time < row.event_time]
        assert row.recency_s == pytest.approx((row.event_time - before.event_time.max()) / 1000 if len(before) else 0.0)


def test_the_shopper_profile_keeps_the_horizon_and_forgets_what_is_older() -> None:
    day = 24 * 60 * MIN
    clicks = pd.DataFrame(
        {
            "event_id": ["a", "b", "c", "d", "e", "f"],
            "event_type": ["view", "purchase", "click", "view", "add_to_cart", "view"],
            "user_key": ["u", "u", "u", "u", "u", "v"],
            "price_seen": [10.0, 10.0, 12.0, 20.0, 20.0, 5.0],
            "event_time": [0, MIN, 2 * day, 7 * day, 7 * day + MIN, 7 * day + MIN],
        }
    )
    rows = shopper_profile_frame(clicks, horizon_s=7 * 24 * 3600)
    columns = ["user_key", "shopper_views", "shopper_clicks", "shopper_carts", "shopper_purchases"]
    assert rows[columns].values.tolist() == [
        ["u", 1, 0, 0, 0],
        ["u", 1, 0, 0, 1],
        ["u", 1, 1, 0, 1],
        ["u", 2, 1, 0, 1],  # exactly 7 days after the first view: both ends are in
        ["u", 1, 1, 1, 1],  # a minute later the first view has aged out; the purchase at 1 min is still in
        ["v", 1, 0, 0, 0],
    ]
    # paid 10 against views at 10 and 20: exp(ln 10 − (ln 10 + ln 20) / 2) = 1/√2
    assert rows["shopper_paid_ratio"].tolist()[3] == pytest.approx(2**-0.5)
    assert rows["shopper_paid_ratio"].tolist()[4] == pytest.approx(0.5)  # the 10 view is gone: 10 / 20
    assert rows["shopper_paid_ratio"].tolist()[5] == 1.0  # no purchase


def test_session_window_takes_both_ends_and_every_event_of_the_same_millisecond() -> None:
    minute = 60_000
    clicks = pd.DataFrame(
        {
            "event_id": ["a", "b", "c", "d", "e"],
            "event_type": ["view", "view", "add_to_cart", "view", "purchase"],
            "user_key": "u",
            "price_seen": [10.0, 20.0, 20.0, 30.0, 30.0],
            "event_time": [0, 30 * minute, 30 * minute, 31 * minute, 32 * minute],
        }
    )
    rows = user_session_frame(clicks)[["recent_views", "recent_carts", "mean_price_seen", "recency_s"]]
    assert rows.to_dict("records") == [
        {"recent_views": 1, "recent_carts": 0, "mean_price_seen": 10.0, "recency_s": 0.0},
        {"recent_views": 2, "recent_carts": 1, "mean_price_seen": 15.0, "recency_s": 1800.0},  # 0 and 30 min
        # the view's peer: the same recency, whichever of the two came first (the order cannot matter)
        {"recent_views": 2, "recent_carts": 1, "mean_price_seen": 15.0, "recency_s": 1800.0},
        {"recent_views": 2, "recent_carts": 1, "mean_price_seen": 25.0, "recency_s": 60.0},  # 0 is out
    ]


def test_review_summary_is_a_running_mean(history: dict[str, pd.DataFrame]) -> None:
    reviews = history["review"].copy()
    assert len(reviews) > 5
    reviews["sentiment"] = np.linspace(-1, 1, len(reviews))
    reviews["review_embedding"] = [[float(i)] * 4 for i in range(len(reviews))]
    frame = sku_review_frame(pd.concat([reviews, reviews.iloc[:3]]))  # duplicates dropped by review_id
    assert list(frame.columns) == list(REVIEW_COLUMNS)
    for row in frame.itertuples():
        upto = reviews[(reviews.sku == row.sku) & (reviews.event_time <= row.event_time)]
        assert row.review_count == len(upto)
        assert row.mean_rating == pytest.approx(upto.rating.mean())
        assert row.sentiment == pytest.approx(upto.sentiment.mean())
        assert row.review_embedding == pytest.approx(np.mean(upto.review_embedding.tolist(), axis=0))
    plain = sku_review_frame(history["review"])
    assert plain.sentiment.isna().all() and plain.review_embedding.isna().all()


def test_empty_inputs_give_empty_frames_with_the_columns() -> None:
    empty_clicks = pd.DataFrame(columns=["event_id", "event_type", "user_key", "sku", "price_seen", "event_time"])
    assert list(sku_demand_frame(empty_clicks).columns) == list(DEMAND_COLUMNS)
    assert list(user_session_frame(empty_clicks).columns) == list(SESSION_COLUMNS)
    empty_prices = pd.DataFrame(columns=["event_id", "sku", "competitor", "price", "in_stock", "event_time"])
    assert list(sku_competition_frame(empty_prices).columns) == list(COMPETITION_COLUMNS)
    assert list(sku_review_frame(pd.DataFrame(columns=["review_id", "sku", "rating", "event_time"])).columns) == list(
        REVIEW_COLUMNS
    )
