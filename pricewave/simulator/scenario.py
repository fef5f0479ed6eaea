"""The scenario file: everything that shapes a simulated market, as a validated model.

A scenario is a YAML mapping whose sections mirror the models below (every field has a default,
so ``name: mine`` alone is a valid scenario). A bare name (``small``, ``default``,
``holiday_rush``) means a file shipped in ``pricewave/scenarios/``; anything else is a path.
``pricewave/scenarios/README.md`` documents every field.

Example:
    >>> from pricewave.simulator.scenario import load_scenario, parse_scenario
    >>> load_scenario("small").catalog.n_skus
    12
    >>> parse_scenario({"name": "mine", "catalog": {"n_skus": 3}}).catalog.n_skus
    3
    >>> parse_scenario({"name": "bad", "users": {"n_users": 0}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pricewave.errors.ConfigError: invalid scenario field users.n_users in <dict>: Input should be greater than ...
"""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pricewave.config import HolidayPeriod
from pricewave.errors import ConfigError

MalformedKind = Literal[
    "truncated_json",
    "wrong_type",
    "nan",
    "negative_price",
    "bad_timestamp",
    "non_utf8",
    "oversize",
    "missing_field",
]
MALFORMED_KINDS: tuple[MalformedKind, ...] = (
    "truncated_json",
    "wrong_type",
    "nan",
    "negative_price",
    "bad_timestamp",
    "non_utf8",
    "oversize",
    "missing_field",
)
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategorySpec(_Spec):
    """A product category: how its skus' costs, prices, MAP and quality are drawn."""

    name: str = Field(pattern=NAME_PATTERN, description="Category name; prefixes its sku ids and is the search query.")
    weight: float = Field(1.0, gt=0, description="Relative share of the catalog's skus in this category.")
    cost_min: float = Field(5.0, gt=0, le=100_000, description="Lowest unit cost.")
    cost_max: float = Field(50.0, gt=0, le=100_000, description="Highest unit cost (costs are log-uniform).")
    markup_min: float = Field(1.4, ge=1.0, le=20, description="Lowest list price / cost.")
    markup_max: float = Field(2.2, ge=1.0, le=20, description="Highest list price / cost.")
    map_ratio: float = Field(
        0.0, ge=0, le=1, description="Minimum advertised price (MAP) as a share of list price; 0 means no MAP."
    )
    quality_mean: float = Field(0.6, ge=0, le=1, description="Mean hidden quality (0..1) of the category's skus.")
    quality_sd: float = Field(0.15, ge=0, le=1, description="Spread of hidden quality (clipped to 0..1).")
    elasticity_scale: float = Field(
        1.0, gt=0, le=10, description="Multiplies every segment's elasticity for this category's skus."
    )

    @model_validator(mode="after")
    def _ranges(self) -> CategorySpec:
        if self.cost_min > self.cost_max:
            raise ValueError("cost_min must not exceed cost_max")
        if self.markup_min > self.markup_max:
            raise ValueError("markup_min must not exceed markup_max")
        return self


def _default_categories() -> list[CategorySpec]:
    return [
        CategorySpec(name="snacks", weight=2.0, cost_min=1.0, cost_max=8.0),
        CategorySpec(name="coffee", weight=1.0, cost_min=4.0, cost_max=25.0, map_ratio=0.8),
        CategorySpec(name="kitchen", weight=1.0, cost_min=10.0, cost_max=120.0, elasticity_scale=1.2),
    ]


class CatalogSpec(_Spec):
    """The catalog: how many skus, their categories, popularity and stock."""

    n_skus: int = Field(200, ge=1, le=1_000_000, description="Number of skus.")
    categories: list[CategorySpec] = Field(
        default_factory=_default_categories, min_length=1, description="Categories skus are drawn from."
    )
    popularity_skew: float = Field(
        1.0, ge=0, le=5, description="Zipf exponent of sku popularity (0 = every sku viewed equally often)."
    )
    initial_stock_min: int = Field(50, ge=0, le=10_000_000, description="Lowest starting stock per sku.")
    initial_stock_max: int = Field(500, ge=0, le=10_000_000, description="Highest starting stock per sku.")
    replenish_interval_h: float = Field(
        24.0, gt=0, description="Simulated hours between restocks; a restock refills every sku to its start level."
    )

    @field_validator("categories")
    @classmethod
    def _unique_categories(cls, value: list[CategorySpec]) -> list[CategorySpec]:
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError("category names must be unique")
        return value

    @model_validator(mode="after")
    def _stock_range(self) -> CatalogSpec:
        if self.initial_stock_min > self.initial_stock_max:
            raise ValueError("initial_stock_min must not exceed initial_stock_max")
        return self


class PricingSpec(_Spec):
    """The shop's price rules the oracle respects (the pipeline's guardrails use the same)."""

    min_margin: float = Field(0.05, ge=0, le=10, description="Floor = max(cost × (1 + min_margin), MAP).")
    ceiling_ratio: float = Field(1.5, ge=1, le=20, description="Ceiling = list price × ceiling_ratio (at least floor).")
    offer_ttl_s: float = Field(
        900.0, gt=0, description="Simulated seconds a personalized offer stays fresh after its event time."
    )


class ChannelMix(_Spec):
    """Relative weights of the channels a segment's sessions come from."""

    web: float = Field(0.6, ge=0, description="Weight of the web shop.")
    app: float = Field(0.3, ge=0, description="Weight of the mobile app.")
    ads: float = Field(0.1, ge=0, description="Weight of ad landings.")

    @model_validator(mode="after")
    def _some_channel(self) -> ChannelMix:
        if self.web + self.app + self.ads <= 0:
            raise ValueError("at least one channel weight must be positive")
        return self


class SegmentSpec(_Spec):
    """A hidden customer segment. Never a protected attribute, never sent in events."""

    name: str = Field(pattern=NAME_PATTERN, description="Segment name (hidden; for evaluation only).")
    share: float = Field(1.0, gt=0, description="Relative share of users in this segment.")
    willingness_to_pay: float = Field(
        1.0, gt=0, le=100, description="Price, as a multiple of list price, at which the price term is neutral."
    )
    elasticity: float = Field(
        2.5, gt=0, le=50, description="Coefficient of log(price / reference price) in the purchase logit."
    )
    base_utility: float = Field(-3.0, ge=-20, le=20, description="Purchase logit at the reference price.")
    quality_weight: float = Field(2.0, ge=0, le=20, description="Logit gain per unit of hidden quality above 0.5.")
    competitor_weight: float = Field(
        1.0, ge=0, le=20, description="Logit penalty slope when our price exceeds the cheapest in-stock competitor."
    )
    views_per_session: float = Field(4.0, ge=1, le=1000, description="Mean product views per session.")
    search_share: float = Field(0.3, ge=0, le=1, description="Share of sessions that start with a search.")
    channels: ChannelMix = Field(default_factory=ChannelMix, description="Where this segment's sessions come from.")


def _default_segments() -> list[SegmentSpec]:
    return [
        SegmentSpec(name="bargain", share=3, willingness_to_pay=0.85, elasticity=4.0, competitor_weight=2.0),
        SegmentSpec(name="mainstream", share=5, willingness_to_pay=1.0, elasticity=2.5),
        SegmentSpec(name="premium", share=2, willingness_to_pay=1.3, elasticity=1.6, competitor_weight=0.3),
    ]


class FunnelSpec(_Spec):
    """How clicks and carts relate to the hidden purchase probability P (all nested: buy ⊂ cart ⊂ click)."""

    click_floor: float = Field(0.2, ge=0, le=1, description="Click probability of a view with P = 0.")
    click_multiple: float = Field(4.0, ge=1, le=100, description="Click probability = click_floor + multiple × P.")
    cart_multiple: float = Field(2.0, ge=1, le=100, description="Add-to-cart probability = multiple × P.")
    max_quantity: int = Field(3, ge=1, le=1000, description="Largest quantity per cart or purchase.")


class UsersSpec(_Spec):
    """The user population, its hidden segments and how sessions arrive."""

    n_users: int = Field(5000, ge=1, le=10_000_000, description="Number of distinct (pseudonymized) users.")
    sessions_per_hour: float = Field(
        2000.0, gt=0, le=1e8, description="Mean session arrivals per simulated hour, before seasonality."
    )
    think_time_s: float = Field(20.0, gt=0, le=86_400, description="Mean simulated seconds between a session's events.")
    segments: list[SegmentSpec] = Field(
        default_factory=_default_segments, min_length=1, description="Hidden segments users belong to."
    )
    funnel: FunnelSpec = Field(default_factory=FunnelSpec, description="Click and cart rates around purchases.")

    @field_validator("segments")
    @classmethod
    def _unique_segments(cls, value: list[SegmentSpec]) -> list[SegmentSpec]:
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValueError("segment names must be unique")
        return value


class CompetitorsSpec(_Spec):
    """Competitors' price processes: mean-reverting log random walks, promotions, stock-outs."""

    names: list[str] = Field(
        default_factory=lambda: ["acme", "globex"], description="Competitor names (empty: no competitors)."
    )
    updates_per_hour: float = Field(
        600.0, ge=0, le=1e8, description="Competitor price observations per simulated hour, all pairs together."
    )
    price_ratio_min: float = Field(0.85, gt=0, le=10, description="Lowest base price as a multiple of our list price.")
    price_ratio_max: float = Field(1.1, gt=0, le=10, description="Highest base price as a multiple of our list price.")
    volatility: float = Field(0.03, ge=0, le=2, description="Std-dev of the log-price change per sqrt(simulated hour).")
    mean_reversion: float = Field(0.1, ge=0, le=100, description="Per-hour pull of the log price back to its base.")
    promo_probability: float = Field(0.02, ge=0, le=1, description="Chance an observation starts a promotion.")
    promo_discount: float = Field(0.2, ge=0, le=0.95, description="Price cut during a promotion.")
    promo_duration_h: float = Field(12.0, gt=0, description="Simulated hours a promotion lasts.")
    stockout_probability: float = Field(0.01, ge=0, le=1, description="Chance an observation starts a stock-out.")
    stockout_duration_h: float = Field(8.0, gt=0, description="Simulated hours a competitor stock-out lasts.")

    @field_validator("names")
    @classmethod
    def _valid_names(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("competitor names must be unique")
        if any(not 1 <= len(name) <= 64 for name in value):
            raise ValueError("competitor names must be 1 to 64 characters")
        return value

    @model_validator(mode="after")
    def _ratio_range(self) -> CompetitorsSpec:
        if self.price_ratio_min > self.price_ratio_max:
            raise ValueError("price_ratio_min must not exceed price_ratio_max")
        return self


class HolidaySpec(_Spec):
    """A holiday window, in days after the clock start: more traffic, more conversion, more promotions."""

    name: str = Field(pattern=NAME_PATTERN, description="Holiday name.")
    start_day: float = Field(ge=0, description="Start, in simulated days after clock.start.")
    duration_days: float = Field(1.0, gt=0, description="Length in simulated days.")
    demand_multiplier: float = Field(2.0, gt=0, le=100, description="Multiplies session arrivals (and conversion).")
    promo_boost: float = Field(1.0, ge=0, le=100, description="Multiplies competitors' promotion probability.")


class SeasonalitySpec(_Spec):
    """Daily and weekly cycles and holidays; they scale traffic and, partly, conversion."""

    daily_amplitude: float = Field(0.4, ge=0, lt=1, description="Relative swing of traffic over the day.")
    peak_hour: float = Field(20.0, ge=0, lt=24, description="UTC hour of the daily traffic peak.")
    weekend_multiplier: float = Field(1.2, gt=0, le=10, description="Traffic multiplier on Saturdays and Sundays.")
    conversion_weight: float = Field(
        0.5, ge=0, le=2, description="Purchase logit gains conversion_weight × log(traffic multiplier)."
    )
    holidays: list[HolidaySpec] = Field(default_factory=list, description="Holiday windows.")


class ReviewsSpec(_Spec):
    """Reviews written after purchases; the rating follows hidden quality."""

    probability_per_purchase: float = Field(0.1, ge=0, le=1, description="Chance a purchase is later reviewed.")
    delay_h_mean: float = Field(6.0, ge=0, description="Mean simulated hours from purchase to review.")
    rating_noise: float = Field(0.8, ge=0, le=10, description="Std-dev of the rating around 1 + 4 × quality.")


class FaultsSpec(_Spec):
    """Transport faults injected into the event stream (shares of source events)."""

    out_of_order_share: float = Field(0.05, ge=0, le=1, description="Events shifted back within the out-of-orderness.")
    late_share: float = Field(0.01, ge=0, le=1, description="Events shifted back beyond watermark + allowed lateness.")
    duplicate_share: float = Field(0.01, ge=0, le=1, description="Events sent twice (same bytes, same event id).")
    malformed_share: float = Field(0.005, ge=0, le=1, description="Events replaced by malformed bytes.")
    malformed_kinds: list[MalformedKind] = Field(
        default_factory=lambda: list(MALFORMED_KINDS), min_length=1, description="Malformed classes to draw from."
    )
    max_out_of_orderness_ms: int = Field(
        5_000, ge=1, le=86_400_000, description="The pipeline's bounded out-of-orderness."
    )
    allowed_lateness_ms: int = Field(
        0, ge=0, le=86_400_000, description="The pipeline's allowed lateness after the watermark."
    )

    @model_validator(mode="after")
    def _exclusive_shares(self) -> FaultsSpec:
        if self.out_of_order_share + self.late_share + self.malformed_share > 1:
            raise ValueError("out_of_order_share + late_share + malformed_share must not exceed 1")
        return self


class ClockSpec(_Spec):
    """The simulated clock."""

    start: datetime = Field(
        datetime(2025, 1, 6, tzinfo=UTC), description="Simulated start time (ISO 8601; naive means UTC)."
    )

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def start_ms(self) -> int:
        """The start as epoch milliseconds."""
        return int(self.start.timestamp() * 1000)


class Scenario(_Spec):
    """A whole simulated market. Every section has defaults."""

    name: str = Field(pattern=NAME_PATTERN, description="Scenario name (also seeds ids and user keys).")
    description: str = Field("", max_length=2000, description="What the scenario is for.")
    clock: ClockSpec = Field(default_factory=ClockSpec, description="Simulated clock.")
    catalog: CatalogSpec = Field(default_factory=CatalogSpec, description="Catalog and stock.")
    pricing: PricingSpec = Field(default_factory=PricingSpec, description="Price rules (floor, ceiling, offers).")
    users: UsersSpec = Field(default_factory=UsersSpec, description="Users, segments, sessions.")
    competitors: CompetitorsSpec = Field(default_factory=CompetitorsSpec, description="Competitor price processes.")
    seasonality: SeasonalitySpec = Field(default_factory=SeasonalitySpec, description="Daily/weekly cycles, holidays.")
    reviews: ReviewsSpec = Field(default_factory=ReviewsSpec, description="Reviews after purchases.")
    faults: FaultsSpec = Field(default_factory=FaultsSpec, description="Late, out-of-order, duplicate, malformed.")

    def holiday_calendar(self) -> list[HolidayPeriod]:
        """The holidays as dated periods from this scenario's clock start (what the market applies).

        A simulator's own scenario carries its actual clock start (the live clock's, when it runs
        live), so its calendar dates the holidays of that run; the model's ``is_holiday`` reads it
        (:func:`pricewave.pricing.features.is_holiday`).

        Example:
            >>> rush = Scenario(name="rush", seasonality={"holidays": [{"name": "sale", "start_day": 1.5}]})
            >>> [(h.name, h.start.isoformat(), h.end.isoformat()) for h in rush.holiday_calendar()]
            [('sale', '2025-01-07T12:00:00+00:00', '2025-01-08T12:00:00+00:00')]
        """
        start_ms = self.clock.start_ms
        return [
            HolidayPeriod(
                name=holiday.name,
                start=_utc_ms(_first_ms_of_day(start_ms, holiday.start_day)),
                end=_utc_ms(_first_ms_of_day(start_ms, holiday.start_day + holiday.duration_days)),
            )
            for holiday in self.seasonality.holidays
        ]


_DAY_MS = 86_400_000


def _first_ms_of_day(start_ms: int, day: float) -> int:
    """The first epoch millisecond whose day offset, as the market computes it, is at least ``day``."""
    t = start_ms + math.ceil(day * _DAY_MS)
    while (t - 1 - start_ms) / _DAY_MS >= day:
        t -= 1
    while (t - start_ms) / _DAY_MS < day:
        t += 1
    return t


def _utc_ms(epoch_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)


def _scenario_dir() -> Path:
    return Path(str(importlib.resources.files("pricewave").joinpath("scenarios")))


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with pricewave, sorted."""
    return sorted(path.stem for path in _scenario_dir().glob("*.yaml"))


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    message = str(first["msg"]).replace("Value error, ", "").splitlines()[0]
    return f"invalid scenario field {where} in {source}: {message}"


def parse_scenario(data: Mapping[str, Any], source: str = "<dict>") -> Scenario:
    """Validate a scenario mapping.

    Args:
        data: The parsed YAML mapping.
        source: Where it came from, for the error message.

    Raises:
        ConfigError: One line naming the first invalid field and the problem.
    """
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml"))
    if not looks_like_path:
        shipped = _scenario_dir() / f"{text}.yaml"
        if shipped.is_file():
            return shipped
        names = ", ".join(shipped_scenarios())
        raise ConfigError(f"unknown scenario '{text}': use one of {names} or a path to a .yaml file")
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"scenario file {path} does not exist")
    return path


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name (``small``, ``default``, ``holiday_rush``) or a YAML file.

    Raises:
        ConfigError: Unknown name, missing file, bad YAML or an invalid field (one line).
    """
    if isinstance(name_or_path, Scenario):
        return name_or_path
    path = _resolve(name_or_path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"scenario file {path} is not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read scenario file {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"scenario file {path} must hold a mapping with at least 'name', not {type(loaded).__name__}")
    return parse_scenario(loaded, str(path))
