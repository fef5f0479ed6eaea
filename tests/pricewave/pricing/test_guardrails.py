"""Guardrails: one unit case per rule, the module's invariants as properties, vectorized == scalar."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricewave.errors import ConfigError
from pricewave.pricing.guardrails import (
    GUARDRAIL_NAMES,
    GuardrailPolicy,
    apply_guardrails,
    apply_guardrails_vectorized,
    feasible_interval,
)

NAN = math.nan
POLICY = GuardrailPolicy()
FIELDS = (
    "candidate",
    "cost",
    "base_price",
    "map_price",
    "ceiling",
    "last_published",
    "non_personalized_price",
    "is_offer",
    "model_age_s",
    "features_missing",
)


def guard(**kwargs: Any) -> tuple[float | None, str | None, tuple[str, ...]]:
    policy = kwargs.pop("policy", POLICY)
    decision = apply_guardrails(policy, **kwargs)
    return decision.price, decision.guardrail, decision.applied


# --- one case per rule -------------------------------------------------------------------------


@pytest.mark.parametrize("cost", [None, NAN, 0.0, -3.0, math.inf])
def test_no_floor_publishes_nothing(cost: float | None) -> None:
    assert guard(candidate=15.0, cost=cost, base_price=19.99) == (None, "no_floor", ("no_floor",))


@pytest.mark.parametrize("base", [None, NAN, 0.0, -1.0])
def test_no_base_price_publishes_nothing(base: float | None) -> None:
    assert guard(candidate=15.0, cost=8.0, base_price=base) == (None, "no_base_price", ("no_base_price",))


def test_nothing_changes_a_price_point_inside_the_bounds() -> None:
    assert guard(candidate=17.99, cost=8.0, base_price=19.99) == (17.99, None, ())


def test_floor_is_cost_plus_margin_and_rounds_up_inside() -> None:
    # floor = 8 × 1.05 = 8.4; 8.99 is the nearest price point in [8.4, 39.98]
    assert guard(candidate=7.0, cost=8.0, base_price=19.99) == (8.99, "price_point", ("floor", "price_point"))


def test_map_raises_the_floor() -> None:
    price, _, applied = guard(candidate=10.0, cost=8.0, map_price=12.5, base_price=19.99)
    assert (price, applied) == (12.99, ("floor", "price_point"))
    # MAP below cost × (1 + margin) does not lower the floor
    assert guard(candidate=7.0, cost=8.0, map_price=5.0, base_price=19.99)[0] == 8.99


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"policy": GuardrailPolicy(kill_switch=True)}, "manual"),
        ({"model_age_s": 3601.0}, "stale model"),
        ({"model_age_s": None}, "unknown age"),
        ({"features_missing": True}, "missing features"),
        ({"candidate": NAN}, "no candidate"),
        ({"candidate": -5.0}, "negative candidate"),
    ],
)
def test_kill_switch_starts_from_the_base_price(overrides: dict[str, Any], why: str) -> None:
    kwargs: dict[str, Any] = {"candidate": 25.0, "cost": 8.0, "base_price": 19.99, "last_published": 24.99}
    kwargs.update(overrides)
    price, guardrail, applied = guard(**kwargs)
    # the base price, not the candidate, and not rate-limited towards last_published (24.99 ± 10%)
    assert (price, guardrail, applied) == (19.99, "kill_switch", ("kill_switch",)), why


def test_kill_switch_base_price_is_still_clamped() -> None:
    price, _, applied = guard(candidate=25.0, cost=20.0, base_price=19.99, model_age_s=1e9)
    assert applied == ("kill_switch", "floor", "price_point")
    assert price == 21.99  # floor 21.0 → nearest price point above it


def test_max_change_limits_the_move() -> None:
    assert guard(candidate=30.0, cost=8.0, base_price=19.99, last_published=20.0) == (
        21.99,
        "price_point",
        ("max_change", "price_point"),
    )
    assert guard(candidate=10.0, cost=8.0, base_price=19.99, last_published=20.0)[0] == 18.99
    assert guard(candidate=21.99, cost=8.0, base_price=19.99, last_published=20.0) == (21.99, None, ())


def test_floor_beats_max_change() -> None:
    # band [9, 11] lies under the floor 12.6: the floor wins, the interval falls back to [floor, upper]
    assert guard(candidate=10.0, cost=12.0, base_price=19.99, last_published=10.0) == (
        12.99,
        "price_point",
        ("floor", "price_point"),
    )


def test_ceiling_from_multiple_and_explicit() -> None:
    assert guard(candidate=55.0, cost=8.0, base_price=20.0) == (39.99, "price_point", ("ceiling", "price_point"))
    assert guard(candidate=55.0, cost=8.0, base_price=20.0, ceiling=30.0)[0] == 29.99
    assert guard(candidate=55.0, cost=8.0, base_price=20.0, ceiling=NAN)[0] == 39.99


def test_emergency_cap() -> None:
    policy = GuardrailPolicy(emergency_cap=1.5)
    assert guard(policy=policy, candidate=35.0, cost=8.0, base_price=20.0) == (
        29.99,
        "price_point",
        ("emergency_cap", "price_point"),
    )


def test_offer_never_exceeds_the_non_personalized_price() -> None:
    kwargs: dict[str, Any] = {"candidate": 19.5, "cost": 8.0, "base_price": 19.99, "is_offer": True}
    assert guard(**kwargs, non_personalized_price=18.0) == (17.99, "price_point", ("discount_only", "price_point"))
    # no sku price: the base price 19.99 is the reference; 19.5 is not above it and rounds to 19.99
    assert guard(**kwargs, non_personalized_price=NAN) == (19.99, "price_point", ("price_point",))
    assert guard(**{**kwargs, "candidate": 25.0})[0] == 19.99  # no sku price: the base price is the reference
    relaxed = GuardrailPolicy(personalized_discount_only=False)
    assert guard(policy=relaxed, **kwargs, non_personalized_price=18.0)[0] == 19.99


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cost": 30.0, "ceiling": 25.0},
        {"cost": 18.0, "is_offer": True, "non_personalized_price": 15.0},
        {"cost": 18.0, "map_price": 50.0},
        {"cost": 8.0, "ceiling": math.inf},
        {"cost": 8.0, "ceiling": -1.0},
    ],
)
def test_floor_above_the_upper_bound_publishes_nothing(kwargs: dict[str, Any]) -> None:
    price, guardrail, _ = guard(candidate=20.0, base_price=19.99, **kwargs)
    assert (price, guardrail) == (None, "infeasible")


def test_price_point_falls_back_to_cents_then_to_the_exact_bound() -> None:
    # [10.5, 10.9] holds no x.99: the nearest whole cent
    assert guard(candidate=10.734, cost=10.0, base_price=10.0, ceiling=10.9) == (
        10.73,
        "price_point",
        ("price_point",),
    )
    # floor 10.5105, ceiling 10.515: neither 10.51 nor 10.52 fits, so the exact floor
    assert guard(candidate=9.0, cost=10.01, base_price=10.0, ceiling=10.515) == (
        10.01 * 1.05,
        "floor",
        ("floor",),
    )


def test_price_points_can_be_disabled() -> None:
    policy = GuardrailPolicy(price_point_ending=0.0)
    assert guard(policy=policy, candidate=17.456, cost=8.0, base_price=19.99)[0] == 17.46


def test_round_to_the_nearest_point_inside_the_max_change_band() -> None:
    # band [18.0, 22.0]: 22.49 rounds to 21.99 (22.99 would leave the band)
    assert guard(candidate=22.0, cost=8.0, base_price=19.99, last_published=20.0)[0] == 21.99


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_margin": -0.1},
        {"max_change_pct": 0.0},
        {"max_change_pct": 1.5},
        {"price_point_ending": 1.0},
        {"ceiling_multiple": 0.0},
        {"emergency_cap": -1.0},
        {"max_model_age_s": 0.0},
    ],
)
def test_invalid_policy_raises_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="invalid guardrail policy"):
        GuardrailPolicy(**kwargs)


# --- the invariants, checked over arrays ---------------------------------------------------------


def _arr(inputs: dict[str, Any], name: str) -> np.ndarray:
    return np.asarray([NAN if v is None else v for v in np.atleast_1d(inputs[name])], dtype=np.float64)


def check_invariants(
    policy: GuardrailPolicy,
    inputs: dict[str, Any],
    price: np.ndarray,
    guardrail: list[str | None],
    applied: list[tuple[str, ...]] | list[list[str]],
) -> int:
    """Assert the module docstring's invariants for every row; returns the number of rows checked.

    The bounds are re-derived here from the inputs, independently of the implementation.
    """
    cand, cost, base = _arr(inputs, "candidate"), _arr(inputs, "cost"), _arr(inputs, "base_price")
    mapp, ceil_in = _arr(inputs, "map_price"), _arr(inputs, "ceiling")
    last, npp = _arr(inputs, "last_published"), _arr(inputs, "non_personalized_price")
    age = _arr(inputs, "model_age_s")
    n = price.shape[0]
    offer = np.broadcast_to(np.asarray(inputs["is_offer"], dtype=bool), (n,))
    missing = np.broadcast_to(np.asarray(inputs["features_missing"], dtype=bool), (n,))
    e = policy.price_point_ending
    published = ~np.isnan(price)

    with np.errstate(invalid="ignore", over="ignore"):
        has_cost = np.isfinite(cost) & (cost > 0)
        has_base = np.isfinite(base) & (base > 0)
        floor = np.fmax(cost * (1 + policy.min_margin), mapp)  # fmax ignores a NaN MAP
        ceiling = np.where(np.isnan(ceil_in), base * policy.ceiling_multiple, ceil_in)
        cap = base * policy.emergency_cap if policy.emergency_cap else np.full(n, np.inf)
        reference = np.where(np.isnan(npp), base, npp)
        offer_bound = np.where(offer & policy.personalized_discount_only, reference, np.inf)
        upper = np.minimum(np.minimum(ceiling, cap), offer_bound)
        feasible = has_cost & has_base & np.isfinite(floor) & np.isfinite(upper) & (floor <= upper)
        kill = (
            policy.kill_switch
            | np.isnan(age)
            | (age > policy.max_model_age_s)
            | missing
            | ~(np.isfinite(cand) & (cand > 0))
        )

        # 1, 3: no floor, no base price or an infeasible interval ⇒ nothing; otherwise a price
        assert not published[~has_cost].any(), "published without a floor"
        assert all(guardrail[i] == "no_floor" for i in np.flatnonzero(~has_cost))
        assert not published[~feasible].any(), "published although floor > upper bound"
        assert published[feasible].all(), "nothing published although the interval is feasible"
        assert all(guardrail[i] == "infeasible" for i in np.flatnonzero(has_cost & has_base & ~feasible))

        p = price[feasible]
        # 2: inside every bound
        assert np.isfinite(p).all()
        assert (p >= floor[feasible]).all(), "below the floor"
        assert (p <= ceiling[feasible]).all(), "above the ceiling"
        assert (p <= cap[feasible]).all(), "above the emergency cap"
        assert (p <= offer_bound[feasible]).all(), "offer above the non-personalized price"

        # 4: inside the max-change band when it meets [floor, upper]
        has_last = np.isfinite(last) & (last > 0)
        band_lo, band_hi = last * (1 - policy.max_change_pct), last * (1 + policy.max_change_pct)
        meets = feasible & ~kill & has_last & (np.maximum(floor, band_lo) <= np.minimum(upper, band_hi))
        assert (price[meets] >= band_lo[meets]).all() and (price[meets] <= band_hi[meets]).all(), "max change"

        # 5: a price point whenever one exists in the final interval, else a cent when one exists
        lo = np.where(meets, np.maximum(floor, band_lo), floor)
        hi = np.where(meets, np.minimum(upper, band_hi), upper)
        rows = np.flatnonzero(feasible)
        lo_f, hi_f, p_f = lo[rows], hi[rows], price[rows]
        if e > 0:
            m0 = np.ceil(lo_f - e)[:, None] + np.array([-1.0, 0.0, 1.0])
            point_exists = ((m0 >= 0) & (lo_f[:, None] <= m0 + e) & (m0 + e <= hi_f[:, None])).any(axis=1)
            is_point = p_f == np.round(p_f - e) + e
            assert is_point[point_exists].all(), "a price point fits but was not used"
        else:
            point_exists = np.zeros(rows.size, dtype=bool)
        c0 = np.ceil(lo_f * 100)[:, None] + np.array([-1.0, 0.0, 1.0])
        cent_exists = ((lo_f[:, None] <= c0 / 100) & (c0 / 100 <= hi_f[:, None])).any(axis=1)
        is_cent = p_f == np.round(p_f * 100) / 100
        assert is_cent[~point_exists & cent_exists].all(), "a whole cent fits but was not used"
        assert ((p_f >= lo_f) & (p_f <= hi_f)).all(), "outside the final interval"

        # 6: kill switch ⇒ the base price clamped, then the nearest price point (or cent) inside
        k_rows = np.flatnonzero(feasible & kill)
        clamped = np.minimum(np.maximum(base[k_rows], floor[k_rows]), upper[k_rows])
        got = price[k_rows]
        if e > 0:
            near = np.floor(clamped - e)[:, None] + np.arange(-2.0, 4.0)
            values = near + e
            ok = (near >= 0) & (values >= floor[k_rows, None]) & (values <= upper[k_rows, None])
            best = np.where(ok, np.abs(values - clamped[:, None]), np.inf).min(axis=1)
            has = ok.any(axis=1)
            assert (np.abs(got - clamped)[has] <= best[has]).all(), "kill switch: not the nearest price point"
        assert all("kill_switch" in applied[i] for i in k_rows)
        assert all("max_change" not in applied[i] for i in k_rows)
        if e > 0:
            exact = np.flatnonzero(np.round(clamped - e) + e == clamped)
            assert (got[exact] == clamped[exact]).all(), "kill switch moved a base price that is a price point"

    # 7: guardrail is the last applied
    for g, a in zip(guardrail, applied, strict=True):
        assert g == (a[-1] if a else None)
        assert set(a) <= set(GUARDRAIL_NAMES)
    return n


# --- Hypothesis strategies ----------------------------------------------------------------------

prices = st.floats(0.01, 2000, allow_nan=False)
maybe = st.one_of(st.just(NAN), st.none(), prices)
edgy = st.one_of(st.sampled_from([NAN, None, 0.0, -1.0, math.inf]), prices)
policies = st.builds(
    GuardrailPolicy,
    min_margin=st.sampled_from([0.0, 0.05, 0.3]),
    max_change_pct=st.sampled_from([0.01, 0.1, 0.5]),
    price_point_ending=st.sampled_from([0.0, 0.99, 0.95, 0.5]),
    ceiling_multiple=st.sampled_from([1.0, 2.0, 3.0]),
    emergency_cap=st.sampled_from([None, 1.0, 1.5]),
    personalized_discount_only=st.booleans(),
    kill_switch=st.sampled_from([False, False, False, True]),
)
rows_st = st.fixed_dictionaries(
    {
        "candidate": edgy,
        "cost": edgy,
        "base_price": edgy,
        "map_price": maybe,
        "ceiling": st.one_of(maybe, st.sampled_from([-1.0, math.inf])),
        "last_published": st.one_of(maybe, st.just(0.0)),
        "non_personalized_price": maybe,
        "is_offer": st.booleans(),
        "model_age_s": st.one_of(st.just(NAN), st.floats(0, 7200)),
        "features_missing": st.booleans(),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies, row=rows_st)
def test_scalar_invariants(policy: GuardrailPolicy, row: dict[str, Any]) -> None:
    d = apply_guardrails(policy, **row)
    price = np.asarray([NAN if d.price is None else d.price])
    check_invariants(policy, {k: [v] for k, v in row.items()}, price, [d.guardrail], [d.applied])


def _columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        name: np.asarray(
            [NAN if r[name] is None else r[name] for r in rows], dtype=bool if name in BOOLS else np.float64
        )
        for name in FIELDS
    }


BOOLS = {"is_offer", "features_missing"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies, rows=st.lists(rows_st, min_size=1, max_size=40))
def test_vectorized_equals_scalar(policy: GuardrailPolicy, rows: list[dict[str, Any]]) -> None:
    batch = apply_guardrails_vectorized(policy, **_columns(rows))
    for i, row in enumerate(rows):
        d = apply_guardrails(policy, **row)
        got = batch.price[i]
        assert (d.price is None and np.isnan(got)) or d.price == got, (i, row, d, got)
    assert batch.guardrails() == [apply_guardrails(policy, **r).guardrail for r in rows]
    assert batch.applied() == [list(apply_guardrails(policy, **r).applied) for r in rows]


def test_vectorized_accepts_scalars_and_broadcasts() -> None:
    batch = apply_guardrails_vectorized(POLICY, candidate=[7.3, 30.0, 17.99], cost=8.0, base_price=19.99)
    assert batch.price.tolist() == [8.99, 29.99, 17.99]
    assert batch.guardrails() == ["price_point", "price_point", None]


def test_feasible_interval_spans_the_band_when_it_fits() -> None:
    interval = feasible_interval(POLICY, cost=[8.0, 8.0, 40.0], base_price=19.99, last_published=[20.0, NAN, 20.0])
    assert interval.lo[0] == pytest.approx(18.0) and interval.hi[0] == pytest.approx(22.0)
    assert interval.lo[1] == pytest.approx(8.4) and interval.hi[1] == pytest.approx(39.98)
    assert not interval.feasible[2] and np.isnan(interval.lo[2])


# --- ≥ 100,000 cases over the vectorized function -------------------------------------------------

ROWS_PER_EXAMPLE = 1_000
EXAMPLES = 150


def random_rows(seed: int, n: int) -> dict[str, Any]:
    """``n`` rows of plausible inputs with edge values mixed in (NaN, 0, negatives, inf, exact bounds)."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.uniform(np.log(0.05), np.log(2000), n))
    base = scale.copy()
    cost = base * rng.uniform(0.1, 1.5, n)
    candidate = base * np.exp(rng.normal(0, 0.5, n))
    map_price = np.where(rng.random(n) < 0.3, cost * rng.uniform(0.8, 1.6, n), NAN)
    ceiling = np.where(rng.random(n) < 0.4, base * rng.uniform(0.5, 3.0, n), NAN)
    last = np.where(rng.random(n) < 0.7, base * rng.uniform(0.5, 1.5, n), NAN)
    npp = np.where(rng.random(n) < 0.5, base * rng.uniform(0.5, 1.2, n), NAN)
    age = rng.uniform(0, 7200, n)

    def spike(values: np.ndarray, specials: list[float], share: float) -> np.ndarray:
        hit = rng.random(n) < share
        return np.where(hit, rng.choice(specials, n), values)

    cost = spike(cost, [NAN, 0.0, -1.0, math.inf], 0.04)
    base = spike(base, [NAN, 0.0, -2.0], 0.02)
    candidate = spike(candidate, [NAN, 0.0, -1.0, math.inf], 0.04)
    ceiling = spike(ceiling, [math.inf, -1.0, 0.0], 0.01)
    last = spike(last, [0.0, -1.0, math.inf], 0.02)
    age = spike(age, [NAN, math.inf], 0.02)
    # exact and near-exact bounds: candidate on the floor / ceiling / band edges, price-point floors,
    # degenerate and hair-thin intervals
    floor = cost * 1.05
    pick = rng.integers(0, 8, n)
    candidate = np.where(pick == 0, floor, candidate)
    candidate = np.where(pick == 1, base * 2.0, candidate)
    candidate = np.where(pick == 2, last * 1.1, candidate)
    candidate = np.where(pick == 3, last * 0.9, candidate)
    cost = np.where(pick == 4, (np.floor(scale) + 0.99) / 1.05, cost)
    ceiling = np.where(pick == 5, floor, ceiling)
    ceiling = np.where(pick == 6, floor + rng.uniform(0, 0.02, n), ceiling)
    return {
        "candidate": candidate,
        "cost": cost,
        "base_price": base,
        "map_price": map_price,
        "ceiling": ceiling,
        "last_published": last,
        "non_personalized_price": npp,
        "is_offer": rng.random(n) < 0.4,
        "model_age_s": age,
        "features_missing": rng.random(n) < 0.05,
    }


@pytest.mark.slow
def test_guardrail_invariants_over_100k_cases() -> None:
    """150 Hypothesis examples × 1,000 numpy-generated rows = 150,000 cases (asserted ≥ 100,000).

    Hypothesis draws the policy and a seed; numpy generates the rows from the seed with edge values
    mixed in. Every row must satisfy every invariant; 50 rows per example are also checked
    against the scalar reference.
    """
    checked: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(policy=policies, seed=st.integers(0, 2**32 - 1))
    def run(policy: GuardrailPolicy, seed: int) -> None:
        inputs = random_rows(seed, ROWS_PER_EXAMPLE)
        batch = apply_guardrails_vectorized(policy, **inputs)
        checked.append(check_invariants(policy, inputs, batch.price, batch.guardrails(), batch.applied()))
        for i in range(0, ROWS_PER_EXAMPLE, ROWS_PER_EXAMPLE // 50):
            row = {name: (value[i].item()) for name, value in inputs.items()}
            d = apply_guardrails(policy, **row)
            assert (d.price is None and np.isnan(batch.price[i])) or d.price == batch.price[i], (row, d)

    run()
    assert sum(checked) >= 100_000, f"only {sum(checked)} cases checked"
