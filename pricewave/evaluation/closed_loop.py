"""One policy in the closed loop: the simulator priced every interval from the recent events' features."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pricewave.config import Settings
from pricewave.evaluation.policies import Pricer
from pricewave.feature_views import (
    shopper_profile_frame,
    sku_competition_frame,
    sku_demand_frame,
    sku_review_frame,
    user_session_frame,
)
from pricewave.feature_views.shopper_profile import PROFILE_COLUMNS, before_event_frame
from pricewave.feature_views.user_session import SESSION_EVENT_TYPES
from pricewave.simulator.runner import RunSummary, Simulator
from pricewave.simulator.scenario import Scenario
from pricewave.training import ExplorationPriceBook, exploring_simulator, holiday_flags

RECENT_MS = 3_600_000
OFFER_TICK_MS = 30_000
"""How often the closed loop prices the offers of the clicks since. The job prices each on arrival and
its offers reach the store within seconds (BENCHMARKS.md), the prices topic within a checkpoint; 30 s
is a shopper's think time or two, and each tick recomputes the shoppers' profiles over their history."""


@dataclass
class RunTrace:
    """What one policy's run recorded, per interval and in total."""

    policy: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[pd.DataFrame] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    events: int = 0
    clicks: list[pd.DataFrame] = field(default_factory=list)
    """The policy phase's click events, when the run keeps them (``keep_clicks``)."""


class RecentEvents:
    """The events of the last hour (clicks, competitor prices) and every review, as frames."""

    def __init__(self) -> None:
        self.clicks: list[pd.DataFrame] = []
        self.prices: list[pd.DataFrame] = []
        self.reviews: list[pd.DataFrame] = []

    def add(self, records: Mapping[str, list[dict[str, Any]]]) -> None:
        for name, target in (("click_event", self.clicks), ("competitor_price", self.prices), ("review", self.reviews)):
            if records.get(name):
                target.append(pd.DataFrame.from_records(records[name]))

    @staticmethod
    def _window(parts: list[pd.DataFrame], since_ms: int) -> pd.DataFrame:
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if frame.empty:
            return frame
        frame = frame[frame["event_time"] >= since_ms]
        parts[:] = [frame]
        return frame

    def frames(self, now_ms: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        clicks = self._window(self.clicks, now_ms - RECENT_MS)
        prices = self._window(self.prices, now_ms - RECENT_MS)
        reviews = self._window(self.reviews, 0)
        return clicks, prices, reviews


class PairedMargin:
    """Expected margin of each view at the shown price AND at the list price, under the hidden model.

    Read right after the simulator yields a view, when the market is exactly as at the view, so
    the counterfactual "what the static list price would have earned on these very views" has
    neither purchase noise nor the drift of the view stream between runs.
    """

    def __init__(self, sim: Simulator) -> None:
        market = sim.market
        self.sim = sim
        self.segment_of = {market.user(i).user_key: market.segment_of(i) for i in range(sim.scenario.users.n_users)}
        self.shown = 0.0
        self.at_list = 0.0

    def add(self, record: Mapping[str, Any]) -> None:
        market, sku = self.sim.market, record["sku"]
        item = market.skus[sku]
        segment = self.segment_of[record["user_key"]]
        context = market.context(sku, int(record["event_time"]))
        price = float(record["price_seen"])
        self.shown += (price - item.cost) * market.purchase_probability(segment, sku, price, context)
        self.at_list += (item.list_price - item.cost) * market.purchase_probability(
            segment, sku, item.list_price, context
        )


class ClosedLoopOffers:
    """The job's personalized offers in the closed loop (the network only).

    As in the job, each view or add-to-cart is priced for its shopper and sku from the shopper's
    session and profile as of the click (:func:`offer_frame`), capped at the sku's price for
    everyone (discount-only), and the price book serves it on the shopper's next view of that sku
    within the offer TTL. The loop prices the clicks of every :data:`OFFER_TICK_MS` at its end.

    Args:
        pricer: The network's pricer.
        scenario: The market (its holidays).
        history: The click events so far (the warm-up's): the shoppers' profiles read them.
    """

    def __init__(self, pricer: Pricer, scenario: Scenario, history: pd.DataFrame) -> None:
        self.pricer = pricer
        self.scenario = scenario
        self.history = [history] if not history.empty else []
        self.priced = 0
        self.discounted = 0

    def price(self, book: Any, clicks: pd.DataFrame, sku_rows: pd.DataFrame, shown: Mapping[str, float]) -> None:
        """Price an offer for each view or add-to-cart of ``clicks`` (new since the last call) and publish them."""
        if clicks.empty:
            return
        self.history.append(clicks)
        triggers = clicks[clicks["event_type"].isin(SESSION_EVENT_TYPES)]
        if triggers.empty:
            return
        history = pd.concat(self.history, ignore_index=True)
        self.history = [history]
        rows = offer_frame(history, triggers, sku_rows, shown)
        rows["is_holiday"] = holiday_flags(self.scenario, rows["event_time"].to_numpy(dtype=np.int64))
        prices = self.pricer.offer_prices(rows)
        for user_key, sku, event_time, price, cap in zip(
            rows["user_key"], rows["sku"], rows["event_time"], prices, rows["non_personalized_price"], strict=True
        ):
            if np.isfinite(price):
                book.set_offer(user_key, sku, float(price), event_time=int(event_time))
                self.priced += 1
                self.discounted += int(price < cap - 1e-9)


def offer_frame(
    history: pd.DataFrame, triggers: pd.DataFrame, sku_rows: pd.DataFrame, shown: Mapping[str, float]
) -> pd.DataFrame:
    """The offer pricer's input for each click of ``triggers``, as the job builds it.

    The shopper's session and profile as of the click (the profile before it: its own view or cart
    taken out, :func:`pricewave.feature_views.shopper_profile.before_event_frame`), the sku's
    latest window features (``sku_rows``, a :func:`decision_frame`) and, as the discount-only cap,
    the sku's price for everyone now (``shown``, else its list price).

    Args:
        history: Every click event up to the triggers (theirs included).
        triggers: The views and adds-to-cart to price.
        sku_rows: One row per sku: catalog and window features.
        shown: The sku prices published so far.
    """
    mine = history[history["user_key"].isin(triggers["user_key"].unique())]
    keys = ["user_key", "event_time"]
    # Clicks of one user at one millisecond share their window rows (RANGE windows in both engines).
    session = user_session_frame(mine).drop_duplicates(keys, keep="last")
    profile = shopper_profile_frame(mine).drop_duplicates(keys, keep="last")
    rows = triggers[["user_key", "sku", "event_type", "event_time"]].astype({"event_time": "int64"})
    rows = before_event_frame(rows.merge(session, on=keys, how="left").merge(profile, on=keys, how="left"))
    catalog = sku_rows.drop(columns=["event_time", "last_published", "is_holiday"], errors="ignore")
    rows = rows.drop(columns="event_type").merge(catalog, on="sku", how="left")
    rows["non_personalized_price"] = rows["sku"].map(shown).fillna(rows["base_price"])
    rows["last_published"] = np.nan  # offers are per event: no rate limit between them
    return rows[rows[list(PROFILE_COLUMNS)].notna().all(axis=1)].reset_index(drop=True)


def _advance(
    sim: Simulator,
    until_ms: int,
    recent: RecentEvents,
    paired: PairedMargin | None = None,
    kept_clicks: list[pd.DataFrame] | None = None,
) -> int:
    """Run the simulator up to ``until_ms`` collecting the clean records; returns how many."""
    records: dict[str, list[dict[str, Any]]] = {"click_event": [], "competitor_price": [], "review": []}
    count = 0
    duration_s = max(0.0, (until_ms - sim.now_ms) / 1000)
    for emission in sim.iter_events(duration_s=duration_s):
        record = emission.record
        if record is not None:
            records[emission.name].append(record)
            count += 1
            if paired is not None and emission.name == "click_event" and record["event_type"] == "view":
                paired.add(record)
    recent.add(records)
    if kept_clicks is not None and records["click_event"]:
        kept_clicks.append(pd.DataFrame.from_records(records["click_event"]))
    return count


def warm_up(
    sim: Simulator, recent: RecentEvents, max_events: int, *, progress: bool = False, desc: str = "warm-up"
) -> dict[str, list[dict[str, Any]]]:
    """Run the simulator for ``max_events`` events into ``recent``; returns the clean records by schema."""
    records: dict[str, list[dict[str, Any]]] = {"click_event": [], "competitor_price": [], "review": []}
    emissions = sim.iter_events(max_events=max_events)
    for emission in tqdm(emissions, total=max_events, desc=desc, disable=not progress, leave=False):
        if emission.record is not None:
            records[emission.name].append(emission.record)
    recent.add(records)
    return records


def decision_frame(
    sim: Simulator, recent: RecentEvents, now_ms: int, last_published: Mapping[str, float]
) -> pd.DataFrame:
    """One row per sku: catalog, guardrail inputs and the features at window end ``now_ms``."""
    clicks, prices, reviews = recent.frames(now_ms)
    skus = list(sim.market.skus.values())
    frame = pd.DataFrame(
        {
            "sku": [s.sku for s in skus],
            "base_price": [s.list_price for s in skus],
            "cost": [s.cost for s in skus],
            "map_price": [s.map_price or np.nan for s in skus],
            "ceiling": [s.ceiling for s in skus],
            "event_time": now_ms,
            "last_published": [last_published.get(s.sku, np.nan) for s in skus],
        }
    )
    before = clicks[clicks["event_time"] < now_ms] if not clicks.empty else clicks
    if not before.empty:
        demand = sku_demand_frame(before, window_ends=[now_ms]).drop(columns="event_time")
        frame = frame.merge(demand, on="sku", how="left")
    if not prices.empty:
        competition = sku_competition_frame(
            prices[prices["event_time"] < now_ms], our_prices=before, window_ends=[now_ms]
        ).drop(columns=["event_time", "competitor_gap"])
        frame = frame.merge(competition, on="sku", how="left")
    if not reviews.empty:
        summary = sku_review_frame(reviews[reviews["event_time"] < now_ms])
        latest = summary.groupby("sku").tail(1).drop(columns=["event_time", "review_embedding"])
        frame = frame.merge(latest, on="sku", how="left")
    frame["is_holiday"] = holiday_flags(sim.scenario, np.full(len(frame), now_ms, dtype=np.int64))
    return frame


def _purchases(clicks: pd.DataFrame, since_ms: int, frame: pd.DataFrame) -> pd.DataFrame:
    """Per sku, the purchases from ``since_ms`` on and their margin, Σ (price paid − cost) · quantity."""
    empty = pd.DataFrame({"purchases": pd.Series(dtype="int64"), "margin": pd.Series(dtype="float64")})
    if clicks.empty:
        return empty
    bought = clicks[(clicks["event_time"] >= since_ms) & (clicks["event_type"] == "purchase")]
    if bought.empty:
        return empty
    cost = bought["sku"].map(frame.set_index("sku")["cost"])
    quantity = bought["quantity"].fillna(1) if "quantity" in bought.columns else 1
    margin = (bought["price_seen"] - cost) * quantity
    return pd.DataFrame({"purchases": bought.groupby("sku").size(), "margin": margin.groupby(bought["sku"]).sum()})


def _summary_figures(summary: RunSummary) -> dict[str, float]:
    return {
        "views": summary.views,
        "stockout_views": summary.stockout_views,
        "purchases": summary.purchases,
        "units": summary.units,
        "revenue": summary.revenue,
        "margin": summary.margin,
        "expected_margin": summary.expected_margin,
        "oracle_margin": summary.oracle_margin,
        "sku_oracle_margin": summary.sku_oracle_margin,
    }


def _population_elasticity(sim: Simulator, sku: str, price: float, now_ms: int) -> float:
    """d log P / d log p of the population mix at ``price`` (central difference)."""
    market = sim.market
    context = market.context(sku, now_ms)
    h = 0.01
    prices = np.array([price * math.exp(-h), price * math.exp(h)])
    weights = market.segment_view_weights()
    demand = np.zeros(2)
    for segment, weight in weights.items():
        demand += weight * market.purchase_probability_curve(segment, sku, prices, context)
    return float((math.log(demand[1]) - math.log(demand[0])) / (2 * h))


def run_policy(
    pricer: Pricer,
    scenario: Scenario,
    settings: Settings,
    *,
    seed: int,
    warmup_events: int,
    interval_s: int,
    events: int | None = None,
    steps: int | None = None,
    oracle_cache: dict[tuple[int, str], float] | None = None,
    progress: bool = True,
    keep_clicks: bool = False,
    offers: bool = True,
) -> RunTrace:
    """One closed-loop run: the shared warm-up, then re-price every ``interval_s`` until done.

    Stops after ``events`` events of the policy phase (the reference run) or after ``steps``
    intervals (the others, so every policy covers the same simulated time). With ``keep_clicks``
    the trace keeps the policy phase's click events (what a shop's clickstream would hold). With
    ``offers`` the network also prices the job's personalized offers (:class:`ClosedLoopOffers`).
    """
    sim = exploring_simulator(scenario, settings, seed, explore_until_ms=None, review_texts=["(review)"])
    book = sim.pricebook
    assert isinstance(book, ExplorationPriceBook)
    recent = RecentEvents()
    warm = warm_up(sim, recent, warmup_events)["click_event"]
    interval_ms = interval_s * 1000
    first = (sim.now_ms // interval_ms + 1) * interval_ms
    book.until_ms = first
    before_first: list[pd.DataFrame] = [pd.DataFrame.from_records(warm)] if warm else []
    _advance(sim, first, recent, kept_clicks=before_first)
    history = pd.concat(before_first, ignore_index=True) if before_first else pd.DataFrame()
    offer_desk = ClosedLoopOffers(pricer, scenario, history) if offers and pricer.policy == "network" else None
    # Every policy starts with full shelves: the per-view margin objective (and the oracle) ignore
    # inventory, so a stock-out inherited from the warm-up would decide the comparison instead.
    sim.market.replenish()
    trace = RunTrace(pricer.policy)
    paired = PairedMargin(sim)
    start = _summary_figures(sim.summary)
    offers_before = sim.summary.price_sources.get("offer", 0)
    last = dict(start)
    shown: dict[str, float] = {}
    oracle_cache = {} if oracle_cache is None else oracle_cache
    bar = tqdm(total=steps or events, desc=f"evaluate {pricer.policy}", disable=not progress, leave=False)
    step = 0
    now = first
    while True:
        frame = decision_frame(sim, recent, now, shown)
        sku_rows = frame.copy()
        prices = pricer.prices(frame)
        for sku, price in zip(frame["sku"], prices, strict=True):
            if np.isfinite(price):
                book.set_sku_price(sku, float(price), event_time=now)
                shown[sku] = float(price)
        frame["price"] = [shown.get(s.sku, s.list_price) for s in sim.market.skus.values()]
        # The decision log's propensity; a row that published nothing keeps showing an older price.
        frame["propensity"] = np.where(np.isfinite(prices), pricer.last_propensity, np.nan)
        frame["oracle_price"] = [
            oracle_cache.setdefault((step, sku), sim.market.oracle_price(None, sku, sim.market.context(sku, now)))
            for sku in frame["sku"]
        ]
        if pricer.policy == "network":
            weights = sim.market.segment_view_weights()
            frame["true_demand_elasticity"] = [
                _population_elasticity(sim, sku, price, now)
                for sku, price in zip(frame["sku"], frame["price"], strict=True)
            ]
            frame["true_logit_coefficient"] = [
                sum(w * sim.market.true_elasticity(s, sku) for s, w in weights.items()) for sku in frame["sku"]
            ]
        paired_before = (paired.shown, paired.at_list)
        added = 0
        tick_end = now
        while tick_end < now + interval_ms:
            tick_end = min(tick_end + OFFER_TICK_MS, now + interval_ms) if offer_desk else now + interval_ms
            tick_clicks: list[pd.DataFrame] = []
            added += _advance(sim, tick_end, recent, paired, tick_clicks)
            if keep_clicks:
                trace.clicks.extend(tick_clicks)
            if offer_desk is not None and tick_clicks:
                offer_desk.price(book, pd.concat(tick_clicks, ignore_index=True), sku_rows, shown)
        trace.events += added
        clicks, _, _ = recent.frames(now + interval_ms)
        period = (
            clicks[(clicks["event_time"] >= now) & (clicks["event_type"] == "view")] if not clicks.empty else clicks
        )
        views = period["sku"].value_counts() if not period.empty else pd.Series(dtype="int64")
        frame["views"] = frame["sku"].map(views).fillna(0).astype(int)
        outcome = _purchases(clicks, now, frame)
        frame["purchases"] = frame["sku"].map(outcome["purchases"]).fillna(0).astype(int)
        frame["margin"] = frame["sku"].map(outcome["margin"]).fillna(0.0)
        frame["step"] = step
        trace.decisions.append(frame)
        figures = _summary_figures(sim.summary)
        trace.steps.append(
            {
                "step": step,
                "time_ms": now,
                **{k: figures[k] - last[k] for k in figures},
                "paired_shown": paired.shown - paired_before[0],
                "paired_list": paired.at_list - paired_before[1],
            }
        )
        last = figures
        step += 1
        now += interval_ms
        bar.update(1 if steps else added)
        if (steps is not None and step >= steps) or (steps is None and events is not None and trace.events >= events):
            break
    bar.close()
    trace.totals = {k: last[k] - start[k] for k in last}
    trace.totals["paired_shown"], trace.totals["paired_list"] = paired.shown, paired.at_list
    if offer_desk is not None:
        trace.totals["offers_priced"], trace.totals["offers_discounted"] = offer_desk.priced, offer_desk.discounted
    trace.totals["views_at_offer"] = sim.summary.price_sources.get("offer", 0) - offers_before
    return trace
