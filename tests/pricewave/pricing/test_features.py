"""The feature spec: names, transforms, missing-value handling, protected attributes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pricewave.errors import DataError
from pricewave.pricing.features import (
    DEMAND_FEATURES,
    EMBEDDING_DIM,
    FEATURE_NAMES,
    REQUIRED_COLUMNS,
    SHOPPER_FEATURES,
    assert_no_protected_inputs,
    build_embedding_matrix,
    build_feature_matrix,
    feature_spec,
    is_protected,
)
from pricewave.privacy import PROTECTED_ATTRIBUTES
from pricewave.schemas import load_schema

T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC, a Wednesday


def row(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "sku": "A",
        "base_price": 20.0,
        "event_time": T0,
        "views_5m": 9,
        "carts_5m": 1,
        "purchases_5m": 0,
        "conversion_5m": 0.0,
        "views_1h": 90,
        "purchases_1h": 3,
        "conversion_1h": 0.033,
    }
    values.update(overrides)
    return values


def features(*rows: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
    return build_feature_matrix(pd.DataFrame(list(rows)))


def col(x: np.ndarray, name: str) -> np.ndarray:
    return x[:, FEATURE_NAMES.index(name)]


def test_feature_names_are_ordered_unique_and_in_the_spec() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    # The demand features lead, and the stream computes each of them: a column of the sku_demand view.
    assert FEATURE_NAMES[: len(DEMAND_FEATURES)] == DEMAND_FEATURES
    assert set(DEMAND_FEATURES) <= set(load_schema("sku_demand").field_names)
    assert FEATURE_NAMES[-5:] == ("hour_sin", "hour_cos", "dow_sin", "dow_cos", "is_holiday")
    assert feature_spec()["feature_names"] == list(FEATURE_NAMES)
    assert feature_spec()["embedding_dim"] == EMBEDDING_DIM


def test_transforms() -> None:
    x, missing = features(
        row(
            competitor_min_price=16.0,
            competitor_offers=3,
            competitor_staleness_s=7200,
            sentiment=3.0,
            mean_rating=5.0,
            review_count=99,
            conversion_5m=4.0,
        )
    )
    assert x.dtype == np.float32 and x.shape == (1, len(FEATURE_NAMES)) and not missing[0]
    assert col(x, "views_5m")[0] == pytest.approx(math.log1p(9))
    assert col(x, "conversion_5m")[0] == 1.0  # clipped
    assert col(x, "competitor_gap")[0] == pytest.approx(0.2)  # (20 - 16) / 20
    assert col(x, "competitor_offers")[0] == pytest.approx(math.log1p(3))
    assert col(x, "competitor_staleness_s")[0] == pytest.approx(math.log1p(2.0))  # hours
    assert col(x, "sentiment")[0] == 1.0 and col(x, "mean_rating")[0] == 1.0
    assert col(x, "review_count")[0] == pytest.approx(math.log1p(99))


def test_time_context_is_cyclic() -> None:
    x, _ = features(row(event_time=T0), row(event_time=T0 + 6 * 3_600_000), row(event_time=T0 + 7 * 86_400_000))
    assert col(x, "hour_sin")[0] == pytest.approx(0.0, abs=1e-6) and col(x, "hour_cos")[0] == pytest.approx(1.0)
    assert col(x, "hour_sin")[1] == pytest.approx(1.0)  # 06:00
    assert col(x, "dow_sin")[0] == pytest.approx(col(x, "dow_sin")[2], abs=1e-5)  # a week later
    # Wednesday = weekday 2 of 7
    assert col(x, "dow_cos")[0] == pytest.approx(math.cos(2 * math.pi * 2 / 7), abs=1e-6)


def test_session_features_only_for_personalized_rows() -> None:
    session = {"recent_views": 4, "recent_carts": 1, "mean_price_seen": 30.0, "recency_s": 20.0}
    x, _ = features(row(user_key="ab" * 16, **session), row(user_key=None, **session))
    assert col(x, "is_personalized").tolist() == [1.0, 0.0]
    assert col(x, "price_exposure")[0] == pytest.approx(1.5)
    assert col(x, "recent_views")[0] == pytest.approx(math.log1p(4))
    names = ["recent_views", "recent_carts", "price_exposure", "recency_s", "is_personalized"]
    assert all(col(x, n)[1] == 0.0 for n in names)


def test_the_shopper_profile_is_shrunk_toward_the_population_and_only_for_offers() -> None:
    key = "ab" * 16
    rates = ("shopper_conversion", "shopper_cart_rate", "shopper_click_rate")
    no_history, thin, bargain_hunter, big_spender, sku_level = (
        row(user_key=key),
        row(user_key=key, shopper_views=2, shopper_clicks=0, shopper_carts=0, shopper_purchases=0),
        row(user_key=key, shopper_views=200, shopper_clicks=40, shopper_carts=4, shopper_purchases=2,
            shopper_paid_ratio=0.8),
        row(user_key=key, shopper_views=200, shopper_clicks=120, shopper_carts=40, shopper_purchases=20,
            shopper_paid_ratio=1.1),
        row(user_key=None, shopper_views=200, shopper_clicks=40, shopper_carts=4, shopper_purchases=2),
    )  # fmt: skip
    x, missing = features(no_history, thin, bargain_hunter, big_spender, sku_level)
    assert not missing.any()
    assert all(col(x, name)[0] == 0.0 for name in (*rates, "shopper_history", "shopper_paid_ratio"))
    for name in rates:
        # two views without a click say little: shrunk toward the prior, not to "never buys"
        assert -0.2 < col(x, name)[1] < 0
        assert col(x, name)[2] < col(x, name)[1] < 0 < col(x, name)[3]
    assert col(x, "shopper_history")[2] == pytest.approx(math.log1p(200))
    assert col(x, "shopper_paid_ratio")[2] < 0 < col(x, "shopper_paid_ratio")[3]
    assert not x[4, [FEATURE_NAMES.index(name) for name in SHOPPER_FEATURES]].any()  # the sku price is for everyone


def test_unknown_optional_features_are_zero_and_not_missing() -> None:
    x, missing = features(row(competitor_min_price=None, sentiment=float("nan")))
    assert np.isfinite(x).all() and not missing.any()
    assert col(x, "competitor_gap")[0] == 0.0 and col(x, "sentiment")[0] == 0.0
    assert col(x, "mean_rating")[0] == 0.0  # absent column → neutral


@pytest.mark.parametrize("name", REQUIRED_COLUMNS)
def test_unknown_required_feature_flags_the_row(name: str) -> None:
    x, missing = features(row(**{name: None}), row())
    assert missing.tolist() == [True, False]
    assert np.isfinite(x).all()


def test_absent_required_column_flags_every_row() -> None:
    frame = pd.DataFrame([row(), row()]).drop(columns=["views_1h"])
    _, missing = build_feature_matrix(frame)
    assert missing.all()


def test_embedding_matrix() -> None:
    good = np.linspace(-1, 1, EMBEDDING_DIM)
    frame = pd.DataFrame({"review_embedding": [good.tolist(), None, [1.0, 2.0], good * np.nan, good]})
    emb, present = build_embedding_matrix(frame)
    assert emb.shape == (5, EMBEDDING_DIM) and emb.dtype == np.float32
    assert present.tolist() == [True, False, False, False, True]
    assert np.allclose(emb[0], good) and not emb[1:4].any()
    assert build_embedding_matrix(pd.DataFrame({"x": [1]}))[1].tolist() == [False]


@pytest.mark.parametrize(
    "name", [*sorted(PROTECTED_ATTRIBUTES), "AGE_GROUP", "AgeGroup", "age-bucket", "user_gender", "zip_code", "PinCode"]
)
def test_protected_inputs_are_refused(name: str) -> None:
    assert is_protected(name)
    with pytest.raises(DataError, match=name):
        assert_no_protected_inputs(["views_5m", name])


@pytest.mark.parametrize("name", [*FEATURE_NAMES, "page_views", "usage", "stage", "message_count", "average_rating"])
def test_ordinary_names_pass(name: str) -> None:
    assert not is_protected(name)
    assert_no_protected_inputs([name])
