"""The simulated market and its hidden demand model: the ground truth prices are judged against.

What the shop never sees: each user's segment (not a protected attribute), the segment's
willingness to pay and elasticity, each sku's quality, and the purchase model::

    logit P(buy | segment s, sku k, price p, context c) =
        base_utility[s] + quality_weight[s] × (quality[k] − 0.5) + c.season_logit
        − elasticity[s] × elasticity_scale[k] × log(p / (willingness_to_pay[s] × list_price[k]))
        − competitor_weight[s] × softplus(8 × log(p / c.competitor_price)) / 8

The last term penalizes being dearer than the cheapest in-stock competitor (≈ 0 when cheaper).
The logit is strictly decreasing and concave in log p, so expected margin
``(p − cost) × P(buy | p)`` is log-concave in log p and the oracle price is found exactly by
bisection on its derivative.

Example:
    >>> from pricewave.simulator.market import Market
    >>> from pricewave.simulator.scenario import load_scenario
    >>> market = Market(load_scenario("small"), seed=0)
    >>> sku = market.sku_ids[0]
    >>> ctx = market.context(sku, market.start_ms)
    >>> p_low = market.purchase_probability("bargain", sku, market.skus[sku].list_price * 0.9, ctx)
    >>> p_high = market.purchase_probability("bargain", sku, market.skus[sku].list_price * 1.1, ctx)
    >>> p_low > p_high
    True
    >>> best = market.oracle_price("bargain", sku, ctx)
    >>> market.skus[sku].floor <= best <= market.skus[sku].ceiling
    True
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pandas as pd

from pricewave.simulator.scenario import HolidaySpec, Scenario

Objective = Literal["margin", "revenue"]
OBJECTIVES: tuple[Objective, ...] = ("margin", "revenue")
CHANNELS = ("web", "app", "ads")
COMPETITOR_SHARPNESS = 8.0  # how sharply the competitor penalty switches on around price parity
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Sku:
    """A catalog item. ``quality`` and ``elasticity_scale`` are hidden; the rest is public."""

    sku: str
    category: str
    cost: float
    list_price: float
    map_price: float
    floor: float
    ceiling: float
    quality: float
    elasticity_scale: float
    popularity: float
    initial_stock: int


@dataclass(frozen=True)
class Segment:
    """A hidden customer segment (see :class:`pricewave.simulator.scenario.SegmentSpec`)."""

    name: str
    share: float
    willingness_to_pay: float
    elasticity: float
    base_utility: float
    quality_weight: float
    competitor_weight: float
    views_per_session: float
    search_share: float
    channel_weights: tuple[float, float, float]


@dataclass(frozen=True)
class User:
    """A simulated user: a raw id (never sent), its pseudonymous key, and its hidden segment."""

    raw_id: str
    user_key: str
    segment: str


@dataclass(frozen=True)
class DemandContext:
    """What, besides segment, sku and price, moves demand at one moment.

    Attributes:
        season_logit: Seasonality's shift of the purchase logit.
        competitor_price: The cheapest in-stock competitor price, or None when none is in stock.
    """

    season_logit: float = 0.0
    competitor_price: float | None = None


@dataclass
class CompetitorOffer:
    """One competitor's price process for one sku (mutable state)."""

    competitor: str
    sku: str
    base_price: float
    log_level: float
    last_update_ms: int
    promo_until_ms: int = -1
    stockout_until_ms: int = -1
    promo_discount: float = 0.0

    def price(self, t_ms: int) -> float:
        """The posted price at ``t_ms`` (promotion applied), rounded to cents."""
        level = math.exp(self.log_level)
        if t_ms < self.promo_until_ms:
            level *= 1.0 - self.promo_discount
        return round(max(level, 0.01), 2)

    def in_stock(self, t_ms: int) -> bool:
        """Whether the competitor has the sku at ``t_ms``."""
        return t_ms >= self.stockout_until_ms


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


def _softplus(z: float) -> float:
    return z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))


class Market:
    """Catalog, users, competitors, seasonality and the hidden demand model for one scenario.

    Construction is deterministic for a ``(scenario, seed)`` pair. Competitor and stock state
    change as the simulation advances (:meth:`observe_competitor`, :meth:`take_stock`,
    :meth:`replenish`).

    Args:
        scenario: The scenario.
        seed: Seeds the catalog, segments, users and competitor processes.
        user_key_secret: The HMAC key for user keys (``Settings.user_key_secret``).
    """

    def __init__(self, scenario: Scenario, seed: int = 0, user_key_secret: bytes = b"pricewave-dev-key-change-me"):
        self.scenario = scenario
        self.start_ms = scenario.clock.start_ms
        self._secret = user_key_secret
        self._rng = random.Random(f"market:{scenario.name}:{seed}")
        self.segments: dict[str, Segment] = {
            spec.name: Segment(
                name=spec.name,
                share=spec.share,
                willingness_to_pay=spec.willingness_to_pay,
                elasticity=spec.elasticity,
                base_utility=spec.base_utility,
                quality_weight=spec.quality_weight,
                competitor_weight=spec.competitor_weight,
                views_per_session=spec.views_per_session,
                search_share=spec.search_share,
                channel_weights=(spec.channels.web, spec.channels.app, spec.channels.ads),
            )
            for spec in scenario.users.segments
        }
        self.skus: dict[str, Sku] = self._build_catalog()
        self.sku_ids: list[str] = list(self.skus)
        self.stock: dict[str, int] = {sku.sku: sku.initial_stock for sku in self.skus.values()}
        self._popularity_cum = list(itertools.accumulate(sku.popularity for sku in self.skus.values()))
        self.by_category: dict[str, list[str]] = {}
        for sku in self.skus.values():
            self.by_category.setdefault(sku.category, []).append(sku.sku)
        self._category_cum = {
            name: list(itertools.accumulate(self.skus[s].popularity for s in ids))
            for name, ids in self.by_category.items()
        }
        self._segment_names = list(self.segments)
        self._segment_cum = list(itertools.accumulate(s.share for s in self.segments.values()))
        self._user_segments = [self._draw_segment(self._rng.random()) for _ in range(scenario.users.n_users)]
        self._users: dict[int, User] = {}
        self.competitor_offers: list[CompetitorOffer] = self._build_competitors()
        self._offers_by_sku: dict[str, list[CompetitorOffer]] = {}
        for offer in self.competitor_offers:
            self._offers_by_sku.setdefault(offer.sku, []).append(offer)
        self._holidays = sorted(scenario.seasonality.holidays, key=lambda h: h.start_day)

    # -- construction -----------------------------------------------------------------------

    def _build_catalog(self) -> dict[str, Sku]:
        spec = self.scenario.catalog
        rng = self._rng
        weights = list(itertools.accumulate(c.weight for c in spec.categories))
        ranks = list(range(1, spec.n_skus + 1))
        rng.shuffle(ranks)
        skus: dict[str, Sku] = {}
        for index in range(spec.n_skus):
            category = spec.categories[bisect.bisect_right(weights, rng.random() * weights[-1])]
            cost = math.exp(rng.uniform(math.log(category.cost_min), math.log(category.cost_max)))
            cost = round(cost, 2) or 0.01
            list_price = round(cost * rng.uniform(category.markup_min, category.markup_max), 2)
            list_price = max(list_price, round(cost + 0.01, 2))
            map_price = round(list_price * category.map_ratio, 2)
            # Rounded up to the cent so the floor never undercuts cost × (1 + min_margin).
            floor = max(math.ceil(cost * (1.0 + self.scenario.pricing.min_margin) * 100 - 1e-6) / 100, map_price)
            ceiling = round(max(list_price * self.scenario.pricing.ceiling_ratio, floor), 2)
            quality = min(1.0, max(0.0, rng.gauss(category.quality_mean, category.quality_sd)))
            sku_id = f"{category.name}-{index:05d}"
            skus[sku_id] = Sku(
                sku=sku_id,
                category=category.name,
                cost=cost,
                list_price=list_price,
                map_price=map_price,
                floor=floor,
                ceiling=ceiling,
                quality=quality,
                elasticity_scale=category.elasticity_scale,
                popularity=1.0 / ranks[index] ** spec.popularity_skew,
                initial_stock=rng.randint(spec.initial_stock_min, spec.initial_stock_max),
            )
        return skus

    def _build_competitors(self) -> list[CompetitorOffer]:
        spec = self.scenario.competitors
        offers = []
        for name in spec.names:
            for sku in self.skus.values():
                base = sku.list_price * self._rng.uniform(spec.price_ratio_min, spec.price_ratio_max)
                offers.append(CompetitorOffer(name, sku.sku, base, math.log(base), self.start_ms))
        return offers

    def _draw_segment(self, u: float) -> str:
        return self._segment_names[bisect.bisect_right(self._segment_cum, u * self._segment_cum[-1])]

    # -- users and catalog ------------------------------------------------------------------

    def user(self, index: int) -> User:
        """The user with the given index (0 ≤ index < n_users); keys are computed lazily."""
        user = self._users.get(index)
        if user is None:
            from pricewave.privacy import pseudonymize_user

            raw_id = f"{self.scenario.name}-user-{index}"
            user = User(raw_id, pseudonymize_user(raw_id, self._secret), self._user_segments[index])
            self._users[index] = user
        return user

    def segment_of(self, index: int) -> str:
        """The hidden segment of user ``index``."""
        return self._user_segments[index]

    def pick_sku(self, u: float, category: str | None = None) -> str:
        """A sku drawn by popularity (within ``category`` when given) from a uniform draw ``u``."""
        ids = self.sku_ids if category is None else self.by_category[category]
        cum = self._popularity_cum if category is None else self._category_cum[category]
        return ids[min(bisect.bisect_right(cum, u * cum[-1]), len(ids) - 1)]

    def catalog_frame(self) -> pd.DataFrame:
        """The public catalog: sku, category, cost, list_price, map_price, floor, ceiling, initial_stock."""
        rows = [
            {
                "sku": s.sku,
                "category": s.category,
                "cost": s.cost,
                "list_price": s.list_price,
                "map_price": s.map_price,
                "floor": s.floor,
                "ceiling": s.ceiling,
                "initial_stock": s.initial_stock,
            }
            for s in self.skus.values()
        ]
        return pd.DataFrame(rows)

    # -- time -------------------------------------------------------------------------------

    def holiday_at(self, t_ms: int) -> HolidaySpec | None:
        """The holiday in force at ``t_ms``, if any (the first listed wins on overlap)."""
        day = (t_ms - self.start_ms) / DAY_MS
        for holiday in self._holidays:
            if holiday.start_day <= day < holiday.start_day + holiday.duration_days:
                return holiday
        return None

    def traffic_multiplier(self, t_ms: int) -> float:
        """Daily × weekly × holiday multiplier of session arrivals at ``t_ms``."""
        spec = self.scenario.seasonality
        moment = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
        hour = moment.hour + moment.minute / 60
        multiplier = 1.0 + spec.daily_amplitude * math.cos(2 * math.pi * (hour - spec.peak_hour) / 24)
        if moment.weekday() >= 5:
            multiplier *= spec.weekend_multiplier
        holiday = self.holiday_at(t_ms)
        if holiday is not None:
            multiplier *= holiday.demand_multiplier
        return multiplier

    def context(self, sku: str, t_ms: int) -> DemandContext:
        """The demand context for ``sku`` at ``t_ms``: seasonality and the cheapest competitor."""
        season = self.scenario.seasonality.conversion_weight * math.log(self.traffic_multiplier(t_ms))
        prices = [o.price(t_ms) for o in self._offers_by_sku.get(sku, ()) if o.in_stock(t_ms)]
        return DemandContext(season_logit=season, competitor_price=min(prices) if prices else None)

    # -- hidden demand model ----------------------------------------------------------------

    def _utility(self, segment: str, sku: str, context: DemandContext) -> tuple[float, float, float, float | None]:
        """(logit intercept at log p = 0, price slope, competitor weight, log competitor price)."""
        seg = self.segments[segment]
        item = self.skus[sku]
        slope = seg.elasticity * item.elasticity_scale
        intercept = (
            seg.base_utility
            + seg.quality_weight * (item.quality - 0.5)
            + context.season_logit
            + slope * math.log(seg.willingness_to_pay * item.list_price)
        )
        log_comp = math.log(context.competitor_price) if context.competitor_price else None
        return intercept, slope, seg.competitor_weight, log_comp

    @staticmethod
    def _logit(x: float, intercept: float, slope: float, weight: float, log_comp: float | None) -> float:
        z = intercept - slope * x
        if log_comp is not None and weight > 0:
            z -= weight * _softplus(COMPETITOR_SHARPNESS * (x - log_comp)) / COMPETITOR_SHARPNESS
        return z

    def purchase_probability(self, segment: str, sku: str, price: float, context: DemandContext) -> float:
        """P(a view by ``segment`` of ``sku`` shown at ``price`` ends in a purchase).

        Strictly decreasing in ``price``.
        """
        if not price > 0:
            raise ValueError(f"price must be positive, got {price}")
        return _sigmoid(self._logit(math.log(price), *self._utility(segment, sku, context)))

    def purchase_probability_curve(
        self, segment: str, sku: str, prices: np.ndarray, context: DemandContext
    ) -> np.ndarray:
        """:meth:`purchase_probability` for an array of prices at once."""
        intercept, slope, weight, log_comp = self._utility(segment, sku, context)
        x = np.log(np.asarray(prices, dtype=float))
        z = intercept - slope * x
        if log_comp is not None and weight > 0:
            z = z - weight * np.logaddexp(0.0, COMPETITOR_SHARPNESS * (x - log_comp)) / COMPETITOR_SHARPNESS
        return 1.0 / (1.0 + np.exp(-z))

    def true_elasticity(self, segment: str, sku: str) -> float:
        """The hidden coefficient of log(price / reference price) in the purchase logit.

        The competitor term adds up to ``competitor_weight`` more when our price is above the
        cheapest competitor's; the demand elasticity d log P / d log p is ``−coef × (1 − P)``.
        """
        return self.segments[segment].elasticity * self.skus[sku].elasticity_scale

    def segment_view_weights(self) -> dict[str, float]:
        """Each segment's expected share of product views (user share × views per session)."""
        raw = {s.name: s.share * s.views_per_session for s in self.segments.values()}
        total = sum(raw.values())
        return {name: value / total for name, value in raw.items()}

    def expected_value(
        self, segment: str | None, sku: str, price: float, context: DemandContext, objective: Objective = "margin"
    ) -> float:
        """Expected margin ``(p − cost) × P`` (or revenue ``p × P``) of one view at ``price``.

        ``segment=None`` means a view by the population mix (:meth:`segment_view_weights`).
        """
        unit = price - self.skus[sku].cost if objective == "margin" else price
        if segment is None:
            weights = self.segment_view_weights()
            return unit * sum(w * self.purchase_probability(s, sku, price, context) for s, w in weights.items())
        return unit * self.purchase_probability(segment, sku, price, context)

    def oracle_price(
        self, segment: str | None, sku: str, context: DemandContext, objective: Objective = "margin"
    ) -> float:
        """The price in [floor, ceiling] that maximizes the expected objective of one view.

        floor = max(cost × (1 + min_margin), MAP); ceiling = max(list price × ceiling_ratio, floor).
        For one segment (the personalized oracle) it is exact up to 1e-9 in log price: the log
        objective is concave in log p, so bisection on its derivative finds the root (or the
        binding bound). ``segment=None`` gives the best single price for the population mix (the
        non-personalized oracle), from a fine grid refined by golden-section search.
        """
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if segment is None:
            return self._mix_oracle_price(sku, context, objective)
        item = self.skus[sku]
        intercept, slope, weight, log_comp = self._utility(segment, sku, context)
        cost = item.cost if objective == "margin" else 0.0

        def derivative(x: float) -> float:
            # d/dx [log(e^x - cost) + log sigmoid(z(x))]
            price = math.exp(x)
            gap = price - cost
            if gap <= 0:
                return math.inf
            z = self._logit(x, intercept, slope, weight, log_comp)
            dz = -slope
            if log_comp is not None and weight > 0:
                dz -= weight * _sigmoid(COMPETITOR_SHARPNESS * (x - log_comp))
            return price / gap + _sigmoid(-z) * dz

        lo, hi = math.log(item.floor), math.log(item.ceiling)
        if derivative(lo) <= 0:
            return item.floor
        if derivative(hi) >= 0:
            return item.ceiling
        while hi - lo > 1e-9:
            mid = 0.5 * (lo + hi)
            if derivative(mid) > 0:
                lo = mid
            else:
                hi = mid
        return math.exp(0.5 * (lo + hi))

    def _mix_oracle_price(self, sku: str, context: DemandContext, objective: Objective) -> float:
        item = self.skus[sku]
        weights = self.segment_view_weights()
        unit_cost = item.cost if objective == "margin" else 0.0
        grid = np.exp(np.linspace(math.log(item.floor), math.log(item.ceiling), 1001))
        demand = sum(w * self.purchase_probability_curve(s, sku, grid, context) for s, w in weights.items())
        best = int(np.argmax((grid - unit_cost) * demand))
        lo, hi = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, len(grid) - 1)])

        def value(x: float) -> float:
            return self.expected_value(None, sku, math.exp(x), context, objective)

        ratio = (math.sqrt(5) - 1) / 2
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        value_a, value_b = value(a), value(b)
        for _ in range(30):
            if value_a < value_b:
                lo, a, value_a = a, b, value_b
                b = lo + ratio * (hi - lo)
                value_b = value(b)
            else:
                hi, b, value_b = b, a, value_a
                a = hi - ratio * (hi - lo)
                value_a = value(a)
        candidates = [float(grid[best]), math.exp(0.5 * (lo + hi))]
        return min(item.ceiling, max(item.floor, max(candidates, key=lambda p: value(math.log(p)))))

    # -- evolving state ---------------------------------------------------------------------

    def observe_competitor(self, rng: random.Random, t_ms: int) -> CompetitorOffer | None:
        """Advance one random competitor/sku price process to ``t_ms`` and return it (None: none)."""
        if not self.competitor_offers:
            return None
        spec = self.scenario.competitors
        offer = self.competitor_offers[rng.randrange(len(self.competitor_offers))]
        hours = max(0.0, (t_ms - offer.last_update_ms) / HOUR_MS)
        pull = 1.0 - math.exp(-spec.mean_reversion * hours)
        offer.log_level += pull * (math.log(offer.base_price) - offer.log_level)
        offer.log_level += rng.gauss(0.0, spec.volatility * math.sqrt(hours))
        offer.last_update_ms = t_ms
        holiday = self.holiday_at(t_ms)
        boost = holiday.promo_boost if holiday is not None else 1.0
        if t_ms >= offer.promo_until_ms and rng.random() < min(1.0, spec.promo_probability * boost):
            offer.promo_until_ms = t_ms + int(spec.promo_duration_h * HOUR_MS)
            offer.promo_discount = spec.promo_discount
        if offer.in_stock(t_ms) and rng.random() < spec.stockout_probability:
            offer.stockout_until_ms = t_ms + int(spec.stockout_duration_h * HOUR_MS)
        return offer

    def take_stock(self, sku: str, quantity: int) -> int:
        """Remove up to ``quantity`` units of ``sku``; returns how many were available."""
        taken = min(quantity, self.stock[sku])
        self.stock[sku] -= taken
        return taken

    def replenish(self) -> None:
        """Refill every sku to its initial stock."""
        for sku in self.skus.values():
            self.stock[sku.sku] = max(self.stock[sku.sku], sku.initial_stock)
