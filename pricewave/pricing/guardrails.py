"""THE guardrails: what turns a model's candidate price into a price we may publish.

Two implementations of the same rules: :func:`apply_guardrails` (one decision, plain Python, the
readable reference) and :func:`apply_guardrails_vectorized` (numpy over arrays, what the streaming
UDF and the offline evaluation call). A property test proves they agree bit for bit.

Rules, in order; each one that CHANGES the price is recorded in ``applied`` and ``guardrail`` is
the last one recorded:

(a) ``no_floor``: floor = max(cost × (1 + min_margin), MAP). A missing, non-finite or
    non-positive cost means there is no floor: nothing is published (fail closed).
    ``no_base_price``: a missing or non-positive base price fails closed the same way (the
    default ceiling, the emergency cap and the kill switch all need it).
(b) ``kill_switch``: the manual switch, a model older than ``max_model_age_s`` (unknown age counts
    as old), missing features or an unusable candidate (NaN, inf, <= 0) start from the base price
    instead of the candidate. Recorded whenever active: the candidate is discarded. A kill-switch
    decision skips (c): a stop returns to the list price at once instead of creeping back.
    ``infeasible``: floor > upper bound, where upper = min(ceiling, emergency cap, the
    non-personalized price for offers), or a bound is not finite: nothing is published.
(c) ``max_change``: clip to last_published × (1 ± max_change_pct).
(d) ``floor`` then ``ceiling``: clamp to [floor, ceiling]; ceiling = base_price × ceiling_multiple
    unless given explicitly.
(e) ``emergency_cap``: ≤ base_price × emergency_cap when the cap is on.
(f) ``discount_only``: an offer (personalized price) never exceeds the non-personalized price
    (the base price when no sku price exists: that is what the channel would show instead).
(g) ``price_point``: snap to the nearest price point (whole units + ``price_point_ending``, e.g.
    x.99) inside the final interval; when none fits (or endings are off) to the nearest whole
    cent inside it; when none fits, keep the exact bound. The final interval is
    [floor, upper] ∩ the max-change band when they intersect, else [floor, upper].

Conflicts resolve toward safety: the floor beats max_change, the ceiling and the cap; a floor
above the upper bound publishes nothing.

Invariants (property-tested, ``tests/pricewave/pricing/test_guardrails.py``), for every row:

1. no floor (cost missing/NaN/<= 0) or no base price ⇒ no price;
2. every emitted price p is finite and floor ≤ p ≤ ceiling, p ≤ base × emergency_cap (cap on),
   and p ≤ the non-personalized price for offers (discount-only on);
3. floor > upper bound ⇒ no price (``infeasible``);
4. not kill switch and last_published given and the band last × (1 ± max_change_pct) intersects
   [floor, upper] ⇒ p is inside the band;
5. p is a price point whenever one exists in the final interval (else a whole cent whenever one
   exists there);
6. kill switch ⇒ p is the base price clamped to [floor, upper] then snapped as in (g);
7. ``guardrail`` is the last entry of ``applied`` (None when nothing changed the price).

Example:
    >>> policy = GuardrailPolicy()
    >>> d = apply_guardrails(policy, candidate=7.30, cost=8.0, base_price=12.99)
    >>> d.price, d.guardrail, d.applied
    (8.99, 'price_point', ('floor', 'price_point'))
    >>> apply_guardrails(policy, candidate=10.0, cost=float("nan"), base_price=12.99).price is None
    True
    >>> batch = apply_guardrails_vectorized(policy, candidate=[7.30, 10.0], cost=[8.0, 0.0], base_price=12.99)
    >>> batch.price.tolist()[0], batch.guardrails()
    (8.99, ['price_point', 'no_floor'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Required, TypedDict, Unpack

import numpy as np
import numpy.typing as npt

from pricewave.config import Settings
from pricewave.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Every guardrail name in the order the rules run: a bit mask in this order IS the applied order.
GUARDRAIL_NAMES: tuple[str, ...] = (
    "no_floor",
    "no_base_price",
    "kill_switch",
    "infeasible",
    "max_change",
    "floor",
    "ceiling",
    "emergency_cap",
    "discount_only",
    "price_point",
)
BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(GUARDRAIL_NAMES)}
FAIL_CLOSED: frozenset[str] = frozenset({"no_floor", "no_base_price", "infeasible"})


@dataclass(frozen=True)
class GuardrailPolicy:
    """The guardrail settings. Invalid values raise :class:`~pricewave.errors.ConfigError`.

    Attributes:
        min_margin: Floor = cost × (1 + min_margin) (or MAP when higher).
        max_change_pct: Largest move per interval relative to the last published price.
        price_point_ending: Prices end in this fraction (0.99 ⇒ x.99); 0 disables price points.
        ceiling_multiple: Ceiling = base_price × this when no explicit ceiling is given.
        emergency_cap: Absolute cap as a multiple of the base price (e.g. 1.5); None = off.
        personalized_discount_only: An offer never exceeds the non-personalized price.
        max_model_age_s: An older model trips the kill switch.
        kill_switch: Manual kill switch: every decision falls back to the base price.
    """

    min_margin: float = 0.05
    max_change_pct: float = 0.10
    price_point_ending: float = 0.99
    ceiling_multiple: float = 2.0
    emergency_cap: float | None = None
    personalized_discount_only: bool = True
    max_model_age_s: float = 3600.0
    kill_switch: bool = False

    def __post_init__(self) -> None:
        checks = [
            (math.isfinite(self.min_margin) and self.min_margin >= 0, "min_margin must be >= 0"),
            (math.isfinite(self.max_change_pct) and 0 < self.max_change_pct < 1, "max_change_pct must be in (0, 1)"),
            (0 <= self.price_point_ending < 1, "price_point_ending must be in [0, 1) (0 disables price points)"),
            (math.isfinite(self.ceiling_multiple) and self.ceiling_multiple > 0, "ceiling_multiple must be > 0"),
            (
                self.emergency_cap is None or (math.isfinite(self.emergency_cap) and self.emergency_cap > 0),
                "emergency_cap must be > 0 or None (off)",
            ),
            (self.max_model_age_s > 0, "max_model_age_s must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid guardrail policy: {message}")


@dataclass(frozen=True)
class GuardrailDecision:
    """One guarded decision: ``price`` None means nothing may be published."""

    price: float | None
    guardrail: str | None
    applied: tuple[str, ...]
    floor: float
    upper: float


def _given(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _number(value: Any) -> float:
    """One row's argument as a float: None (not given) becomes NaN, which every rule reads as such."""
    return math.nan if value is None else float(value)


def is_price_point(price: float, ending: float = 0.99) -> bool:
    """True when ``price`` is a whole number plus ``ending`` (e.g. 12.99), as rule (g) produces them."""
    return math.isfinite(price) and price == round(price - ending) + ending


def _snap_scalar(price: float, lo: float, hi: float, ending: float) -> float:
    """Nearest price point in [lo, hi], else nearest whole cent there, else ``price``. Ties go down."""
    if ending > 0:
        n = math.floor(price - ending)
        best: float | None = None
        for m in (n - 1, n, n + 1, n + 2):
            point = m + ending
            if m >= 0 and lo <= point <= hi and (best is None or abs(point - price) < abs(best - price)):
                best = point
        if best is not None:
            return best
    cents = math.floor(price * 100)
    best = None
    for m in (cents - 1, cents, cents + 1, cents + 2):
        point = m / 100
        if lo <= point <= hi and (best is None or abs(point - price) < abs(best - price)):
            best = point
    return price if best is None else best


class PriceLimits(TypedDict, total=False):
    """What bounds a price besides the candidate: the keyword arguments of every guardrail function.

    :func:`apply_guardrails` takes one row of plain numbers; :func:`feasible_interval` and
    :func:`apply_guardrails_vectorized` take array-likes that broadcast together (NaN = not given).

    Attributes:
        cost: Unit cost; None/NaN/<= 0 means no floor and nothing is published.
        base_price: List price; None/NaN/<= 0 means nothing is published.
        map_price: Minimum advertised price; None/NaN = none.
        ceiling: Explicit ceiling; None/NaN = base_price × ceiling_multiple.
        last_published: The price published last interval; None/NaN/<= 0 = none.
        non_personalized_price: For offers, the sku price for everyone; None/NaN = base price.
        is_offer: True for a personalized (user, sku) offer.
    """

    cost: Required[Any]
    base_price: Required[Any]
    map_price: Any
    ceiling: Any
    last_published: Any
    non_personalized_price: Any
    is_offer: Any


def apply_guardrails(
    policy: GuardrailPolicy,
    *,
    candidate: float | None,
    model_age_s: float | None = 0.0,
    features_missing: bool = False,
    **limits: Unpack[PriceLimits],
) -> GuardrailDecision:
    """Guard one candidate price (the reference implementation of the module's rules).

    Args:
        policy: The guardrail settings.
        candidate: The model's (or the explorer's) price; None/NaN/<= 0 trips the kill switch.
        model_age_s: Age of the model; None/NaN counts as too old.
        features_missing: Required features are missing (kill switch).
        **limits: The row's :class:`PriceLimits` (cost and base price required), plain numbers.

    Returns:
        The decision: price (None = publish nothing), the last guardrail that changed it and all
        that did, in order, plus the floor and upper bound it was held to.
    """
    applied: list[str] = []
    cost, base_price = _number(limits["cost"]), _number(limits["base_price"])
    if not _positive(cost):
        return _closed(applied, "no_floor")
    floor = _floor(policy, cost, _number(limits.get("map_price")))
    if not _positive(base_price):
        return _closed(applied, "no_base_price", floor)
    upper_bounds = _upper_bounds(policy, base_price, limits)
    upper = min(bound for _, bound in upper_bounds)

    kill = _kill_switch(policy, candidate, model_age_s, features_missing)
    if kill:
        applied.append("kill_switch")
    price = base_price if kill else _number(candidate)
    if not (math.isfinite(floor) and math.isfinite(upper) and floor <= upper):
        return _closed(applied, "infeasible", floor, upper)

    lo, hi = floor, upper
    last_published = _number(limits.get("last_published"))
    if not kill and _positive(last_published):
        price, (lo, hi) = _max_change(policy, price, last_published, floor, upper, applied)
    price = _clamp(price, floor, upper_bounds, applied)
    snapped = _snap_scalar(price, lo, hi, policy.price_point_ending)
    if snapped != price:
        applied.append("price_point")
        price = snapped
    return GuardrailDecision(price, applied[-1] if applied else None, tuple(applied), floor, upper)


def _closed(applied: list[str], reason: str, floor: float = math.nan, upper: float = math.nan) -> GuardrailDecision:
    """Rules (a) and ``infeasible``: publish nothing, and say why."""
    applied.append(reason)
    return GuardrailDecision(None, reason, tuple(applied), floor, upper)


def _floor(policy: GuardrailPolicy, cost: float, map_price: float) -> float:
    """Rule (a): the minimum margin over cost, or the minimum advertised price when higher."""
    floor = cost * (1 + policy.min_margin)
    return max(floor, map_price) if _given(map_price) else floor


def _upper_bounds(policy: GuardrailPolicy, base_price: float, limits: PriceLimits) -> list[tuple[str, float]]:
    """Rules (d)-(f): each upper bound that is on, by name, in the order they clamp.

    The discount-only bound is the least of them all (the upper bound itself), so an offer that
    breaks it is recorded as ``discount_only`` only when the ceiling and the cap did not already hold it.
    """
    ceiling = _number(limits.get("ceiling"))
    bounds = [("ceiling", ceiling if _given(ceiling) else base_price * policy.ceiling_multiple)]
    if policy.emergency_cap is not None:
        bounds.append(("emergency_cap", base_price * policy.emergency_cap))
    if limits.get("is_offer", False) and policy.personalized_discount_only:
        non_personalized_price = _number(limits.get("non_personalized_price"))
        reference = non_personalized_price if _given(non_personalized_price) else base_price
        bounds.append(("discount_only", min(min(bound for _, bound in bounds), reference)))
    return bounds


def _kill_switch(
    policy: GuardrailPolicy, candidate: float | None, model_age_s: float | None, features_missing: bool
) -> bool:
    """Rule (b): the manual switch, a stale model, missing features or an unusable candidate."""
    stale = model_age_s is None or math.isnan(model_age_s) or model_age_s > policy.max_model_age_s
    return policy.kill_switch or stale or features_missing or not _positive(candidate)


def _max_change(
    policy: GuardrailPolicy, price: float, last_published: float, floor: float, upper: float, applied: list[str]
) -> tuple[float, tuple[float, float]]:
    """Rule (c): clip to the band around the last published price; the final interval for (g)."""
    band_lo = last_published * (1 - policy.max_change_pct)
    band_hi = last_published * (1 + policy.max_change_pct)
    moved = min(max(price, band_lo), band_hi)
    if moved != price:
        applied.append("max_change")
    interval = (floor, upper)
    if max(floor, band_lo) <= min(upper, band_hi):
        interval = (max(floor, band_lo), min(upper, band_hi))
    return moved, interval


def _clamp(price: float, floor: float, upper_bounds: list[tuple[str, float]], applied: list[str]) -> float:
    """Rules (d)-(f): the floor first, then each upper bound in turn (the floor wins a conflict)."""
    if price < floor:
        applied.append("floor")
        price = floor
    for name, bound in upper_bounds:
        if price > bound:
            applied.append(name)
            price = bound
    return price


@dataclass(frozen=True)
class FeasibleInterval:
    """Per-row bounds before any candidate is known (what the optimizer's grid spans).

    ``lo``/``hi`` is the final interval of a non-kill-switch decision: [floor, upper] ∩ the
    max-change band when they intersect, else [floor, upper]; NaN where nothing may be published.
    ``closed_bits`` holds the fail-closed reason (0 = feasible).
    """

    floor: FloatArray
    ceiling: FloatArray
    cap: FloatArray
    upper: FloatArray
    band_lo: FloatArray
    band_hi: FloatArray
    lo: FloatArray
    hi: FloatArray
    closed_bits: npt.NDArray[np.uint16]

    @property
    def feasible(self) -> BoolArray:
        """Rows where a price may be published."""
        return np.asarray(self.closed_bits == 0)

    def take(self, rows: Any) -> FeasibleInterval:
        """The interval of a subset of rows (an index or bool mask)."""
        return FeasibleInterval(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})

    def repeat(self, k: int) -> FeasibleInterval:
        """Each row's interval broadcast over ``k`` candidates: shape (n,) → (n, k)."""
        return FeasibleInterval(
            **{
                name: np.broadcast_to(getattr(self, name)[:, None], (*self.floor.shape, k))
                for name in self.__dataclass_fields__
            }
        )


def _f64(value: Any, shape: tuple[int, ...]) -> FloatArray:
    array = np.asarray(np.nan if value is None else value, dtype=np.float64)
    return np.broadcast_to(array, shape)


def _shape(*values: Any) -> tuple[int, ...]:
    shapes = [np.shape(v) for v in values if v is not None]
    return tuple(np.broadcast_shapes(*shapes)) if shapes else ()


def feasible_interval(policy: GuardrailPolicy, **limits: Unpack[PriceLimits]) -> FeasibleInterval:
    """Vectorized bounds of rules (a), (c)-(f): where a non-kill-switch price must land.

    Args:
        policy: The guardrail settings.
        **limits: The rows' :class:`PriceLimits`.
    """
    shape = _shape(*limits.values())
    cost_a, base = _f64(limits["cost"], shape), _f64(limits["base_price"], shape)
    map_a, ceiling_a = _f64(limits.get("map_price"), shape), _f64(limits.get("ceiling"), shape)
    last, npp = _f64(limits.get("last_published"), shape), _f64(limits.get("non_personalized_price"), shape)
    offer = np.broadcast_to(np.asarray(limits.get("is_offer", False), dtype=bool), shape)

    with np.errstate(invalid="ignore", over="ignore"):
        has_cost = np.isfinite(cost_a) & (cost_a > 0)
        has_base = np.isfinite(base) & (base > 0)
        floor = cost_a * (1 + policy.min_margin)
        floor = np.where(np.isnan(map_a), floor, np.maximum(floor, map_a))
        ceil = np.where(np.isnan(ceiling_a), base * policy.ceiling_multiple, ceiling_a)
        cap = base * policy.emergency_cap if policy.emergency_cap is not None else np.full(shape, np.inf)
        upper = np.minimum(ceil, cap) if policy.emergency_cap is not None else ceil.copy()
        if policy.personalized_discount_only:
            reference = np.where(np.isnan(npp), base, npp)
            upper = np.where(offer, np.minimum(upper, reference), upper)
        feasible_bounds = np.isfinite(floor) & np.isfinite(upper) & (floor <= upper)
        has_last = np.isfinite(last) & (last > 0)
        band_lo = np.where(has_last, last * (1 - policy.max_change_pct), -np.inf)
        band_hi = np.where(has_last, last * (1 + policy.max_change_pct), np.inf)
        lo_b, hi_b = np.maximum(floor, band_lo), np.minimum(upper, band_hi)
        meets = has_last & (lo_b <= hi_b)
        lo, hi = np.where(meets, lo_b, floor), np.where(meets, hi_b, upper)

    closed = np.zeros(shape, dtype=np.uint16)
    closed = np.where(~feasible_bounds, np.uint16(BIT["infeasible"]), closed)
    closed = np.where(~has_base, np.uint16(BIT["no_base_price"]), closed)
    closed = np.where(~has_cost, np.uint16(BIT["no_floor"]), closed).astype(np.uint16)
    ok = closed == 0
    return FeasibleInterval(
        floor=np.where(has_cost, floor, np.nan),
        ceiling=ceil,
        cap=cap,
        upper=upper,
        band_lo=band_lo,
        band_hi=band_hi,
        lo=np.where(ok, lo, np.nan),
        hi=np.where(ok, hi, np.nan),
        closed_bits=closed,
    )


def _snap_vectorized(price: FloatArray, lo: FloatArray, hi: FloatArray, ending: float) -> FloatArray:
    """Vectorized :func:`_snap_scalar` (same candidates, same order, same tie rule)."""
    with np.errstate(invalid="ignore"):
        result = price.copy()
        found = np.zeros(price.shape, dtype=bool)
        if ending > 0:
            n = np.floor(price - ending)
            points = n[..., None] + np.array([-1.0, 0.0, 1.0, 2.0])
            values = points + ending
            ok = (points >= 0) & (lo[..., None] <= values) & (values <= hi[..., None])
            distance = np.where(ok, np.abs(values - price[..., None]), np.inf)
            pick = np.argmin(distance, axis=-1)
            found = ok.any(axis=-1)
            result = np.where(found, np.take_along_axis(values, pick[..., None], axis=-1)[..., 0], result)
        cents = np.floor(price * 100)
        values = (cents[..., None] + np.array([-1.0, 0.0, 1.0, 2.0])) / 100
        ok = (lo[..., None] <= values) & (values <= hi[..., None])
        distance = np.where(ok, np.abs(values - price[..., None]), np.inf)
        pick = np.argmin(distance, axis=-1)
        use_cents = ~found & ok.any(axis=-1)
        return np.where(use_cents, np.take_along_axis(values, pick[..., None], axis=-1)[..., 0], result)


@dataclass(frozen=True)
class GuardrailBatch:
    """Vectorized decisions: ``price`` NaN = publish nothing; ``applied_bits`` one bit per rule."""

    price: FloatArray
    applied_bits: npt.NDArray[np.uint16]
    interval: FeasibleInterval
    kill_switch: BoolArray

    @property
    def published(self) -> BoolArray:
        """Rows with a price to publish."""
        return np.asarray(~np.isnan(self.price))

    def guardrails(self) -> list[str | None]:
        """Per row, the last guardrail that changed the price (None when none did)."""
        names: list[str | None] = [None] * (1 << len(GUARDRAIL_NAMES))
        for bits in np.unique(self.applied_bits):
            b = int(bits)
            names[b] = GUARDRAIL_NAMES[b.bit_length() - 1] if b else None
        return [names[b] for b in self.applied_bits.ravel().tolist()]

    def applied(self) -> list[list[str]]:
        """Per row, every guardrail that changed the price, in the order applied (fresh lists)."""
        lists = {int(b): applied_names(int(b)) for b in np.unique(self.applied_bits)}
        return [list(lists[b]) for b in self.applied_bits.ravel().tolist()]


def applied_names(bits: int) -> tuple[str, ...]:
    """Decode an ``applied_bits`` value into guardrail names, in the order applied."""
    return tuple(name for name in GUARDRAIL_NAMES if bits & BIT[name])


def apply_guardrails_vectorized(
    policy: GuardrailPolicy,
    *,
    candidate: Any,
    model_age_s: Any = 0.0,
    features_missing: Any = False,
    interval: FeasibleInterval | None = None,
    **limits: Unpack[PriceLimits],
) -> GuardrailBatch:
    """:func:`apply_guardrails` over arrays (NaN for "not given"); identical results per row.

    Args:
        policy: The guardrail settings.
        candidate, model_age_s, features_missing: As in :func:`apply_guardrails`, as array-likes
            that broadcast with the limits.
        interval: A :func:`feasible_interval` already computed for these rows (saves the work).
        **limits: The rows' :class:`PriceLimits`.

    Returns:
        The batch of decisions.
    """
    shape = _shape(candidate, model_age_s, features_missing, *limits.values())
    if interval is None or interval.floor.shape != shape:
        # Broadcast one limit to the whole shape: the interval then has one entry per candidate.
        cost = np.broadcast_to(np.asarray(limits["cost"], dtype=np.float64), shape)
        interval = feasible_interval(policy, **{**limits, "cost": cost})
    cand = _f64(candidate, shape)
    base = _f64(limits["base_price"], shape)
    age = _f64(model_age_s, shape)
    missing = np.broadcast_to(np.asarray(features_missing, dtype=bool), shape)
    offer = np.broadcast_to(np.asarray(limits.get("is_offer", False), dtype=bool), shape)
    iv = interval

    with np.errstate(invalid="ignore"):
        stale = np.isnan(age) | (age > policy.max_model_age_s)
        bad_candidate = ~(np.isfinite(cand) & (cand > 0))
        kill = np.asarray(policy.kill_switch | stale | missing | bad_candidate)
        price = np.where(kill, base, cand)
        bits = np.where(kill & (iv.closed_bits != BIT["no_floor"]) & (iv.closed_bits != BIT["no_base_price"]), 1, 0)
        bits = bits.astype(np.uint16) * np.uint16(BIT["kill_switch"])
        bits |= iv.closed_bits
        ok = iv.closed_bits == 0

        moved = np.where(kill, price, np.minimum(np.maximum(price, iv.band_lo), iv.band_hi))
        bits |= np.where(ok & (moved != price), BIT["max_change"], 0).astype(np.uint16)
        price = moved
        # A kill-switch row ignores the band, so its final interval is [floor, upper].
        lo = np.where(kill, iv.floor, iv.lo)
        hi = np.where(kill, iv.upper, iv.hi)

        steps: list[tuple[str, FloatArray, BoolArray | None]] = [("ceiling", iv.ceiling, None)]
        if policy.emergency_cap is not None:
            steps.append(("emergency_cap", iv.cap, None))
        if policy.personalized_discount_only:
            steps.append(("discount_only", iv.upper, offer))
        raised = price < iv.floor
        bits |= np.where(ok & raised, BIT["floor"], 0).astype(np.uint16)
        price = np.where(raised, iv.floor, price)
        for name, bound, only in steps:
            lowered = price > bound
            if only is not None:
                lowered &= only
            bits |= np.where(ok & lowered, BIT[name], 0).astype(np.uint16)
            price = np.where(lowered, bound, price)

        snapped = _snap_vectorized(price, lo, hi, policy.price_point_ending)
        bits |= np.where(ok & (snapped != price), BIT["price_point"], 0).astype(np.uint16)
        price = np.where(ok, snapped, np.nan)
    return GuardrailBatch(price=price, applied_bits=bits.astype(np.uint16), interval=iv, kill_switch=kill)


def job_guardrails(settings: Settings) -> GuardrailPolicy:
    """The guardrails the streaming job's pricers apply (and the promotion gate judges a model under)."""
    return GuardrailPolicy(max_model_age_s=settings.models.max_age_s)
