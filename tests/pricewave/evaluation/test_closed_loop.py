"""The closed loop's personalized offers: built as the job builds them, discount-only, served on the next view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from pricewave.config import Settings
from pricewave.evaluation.closed_loop import (
    ClosedLoopOffers,
    RecentEvents,
    decision_frame,
    offer_frame,
    run_policy,
    warm_up,
)
from pricewave.evaluation.off_policy_check import scenario_guardrails
from pricewave.evaluation.policies import Pricer
from pricewave.pricing.artifact import load_artifact
from pricewave.simulator.scenario import load_scenario
from pricewave.training import exploring_simulator

torch.set_num_threads(1)


def _clicks(rows: list[tuple[str, str, str, float, int]]) -> pd.DataFrame:
    columns = ["user_key", "sku", "event_type", "price_seen", "event_time"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.assign(event_id=[f"e{i}" for i in range(len(frame))])


def test_offer_rows_read_the_profile_before_the_click_and_the_session_as_of_it() -> None:
    history = _clicks(
        [
            ("u1", "A", "view", 10.0, 0),
            ("u1", "A", "purchase", 10.0, 30_000),
            ("u1", "B", "view", 20.0, 60_000),
            ("u1", "B", "add_to_cart", 20.0, 90_000),
            ("u2", "A", "view", 12.0, 90_000),
        ]
    )
    skus = pd.DataFrame({"sku": ["A", "B"], "base_price": [10.0, 20.0], "cost": [5.0, 9.0], "views_5m": [3, 4]})
    rows = offer_frame(history, history.iloc[2:], skus, {"A": 11.0}).set_index(["user_key", "event_time"])
    view_b, cart_b, view_a = rows.loc[("u1", 60_000)], rows.loc[("u1", 90_000)], rows.loc[("u2", 90_000)]
    # The profile as the offer pricer reads it: the click's own view or cart taken out.
    assert (view_b["shopper_views"], view_b["shopper_purchases"]) == (1, 1)
    assert (cart_b["shopper_views"], cart_b["shopper_carts"]) == (2, 0)
    assert (view_a["shopper_views"], view_a["shopper_purchases"]) == (0, 0)
    # The session as of the click (its own view in), the sku's window features, and the cap.
    assert (view_b["recent_views"], cart_b["recent_views"], cart_b["recent_carts"]) == (2, 2, 1)
    assert cart_b["mean_price_seen"] == pytest.approx(15.0)
    assert (cart_b["views_5m"], cart_b["non_personalized_price"]) == (4, 20.0)  # B unpriced: its base price
    assert view_a["non_personalized_price"] == 11.0
    assert rows["last_published"].isna().all()
    assert list(rows["sku"]) == ["B", "B", "A"]


class RecordingBook:
    def __init__(self) -> None:
        self.offers: list[tuple[str, str, float, int | None]] = []

    def set_offer(self, user_key: str, sku: str, price: float, *, event_time: int | None = None) -> bool:
        self.offers.append((user_key, sku, price, event_time))
        return True


@pytest.fixture(scope="module")
def network(trained_model_dir: Path) -> Pricer:
    return Pricer("network", scenario_guardrails(load_scenario("small")), artifact=load_artifact(trained_model_dir))


def test_offers_are_discount_only_and_above_the_floor(network: Pricer, settings: Settings) -> None:
    scenario = load_scenario("small")
    sim = exploring_simulator(scenario, settings, 5, explore_until_ms=None, review_texts=["(review)"])
    recent = RecentEvents()
    clicks = pd.DataFrame.from_records(warm_up(sim, recent, 8_000)["click_event"])
    sku_rows = decision_frame(sim, recent, sim.now_ms + 1, {})
    shown = {sku: round(0.9 * base, 2) for sku, base in zip(sku_rows["sku"], sku_rows["base_price"], strict=True)}
    offers = ClosedLoopOffers(network, scenario, clicks.iloc[:-400])
    book = RecordingBook()
    offers.price(book, clicks.iloc[-400:], sku_rows, shown)
    triggers = clicks.iloc[-400:]["event_type"].isin(["view", "add_to_cart"]).sum()
    assert len(book.offers) == offers.priced == triggers > 0
    catalog = sku_rows.set_index("sku")
    for _, sku, price, _ in book.offers:
        assert price <= shown[sku] + 1e-9  # discount-only: never above the price for everyone
        assert price >= catalog.loc[sku, "cost"] * (1 + scenario.pricing.min_margin) - 0.01
    assert offers.discounted == sum(price < shown[sku] - 1e-9 for _, sku, price, _ in book.offers)


def _run(network: Pricer, settings: Settings, offers: bool) -> Any:
    return run_policy(
        network, load_scenario("small"), settings, seed=2, warmup_events=10_000, interval_s=300, steps=2,
        progress=False, offers=offers,
    )  # fmt: skip


def test_the_network_run_serves_its_offers_on_later_views(network: Pricer, settings: Settings) -> None:
    with_offers, without = _run(network, settings, True), _run(network, settings, False)
    assert with_offers.totals["offers_priced"] > 0
    assert 0 < with_offers.totals["views_at_offer"] < with_offers.totals["views"]
    assert without.totals["views_at_offer"] == 0 and "offers_priced" not in without.totals
    # The baselines price skus for everyone only.
    static = Pricer("static", network.guardrails)
    assert np.isnan(static.offer_prices(pd.DataFrame({"sku": ["A"]}))).all()
