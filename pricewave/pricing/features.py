"""THE model feature spec: which inputs the demand model sees, in which order, transformed how.

Training, the streaming UDF and the offline evaluation all build model inputs with
:func:`build_feature_matrix` (and :func:`build_embedding_matrix` for the review embedding), so a
model always sees what it was trained on. ``FEATURE_SPEC_VERSION`` changes whenever a name, the
order or a transform changes; an artifact trained on another version is refused.

Raw input columns (one row per decision; NaN / None = not known):

=========================  ============================================================
demand (required)          views_5m, carts_5m, purchases_5m, conversion_5m,
                           views_1h, purchases_1h, conversion_1h
competition                competitor_min_price, competitor_offers, competitor_staleness_s
reviews                    sentiment, mean_rating, review_count, review_embedding (384 floats)
user session (offers)      recent_views, recent_carts, mean_price_seen, recency_s
shopper profile (offers)   shopper_views, shopper_clicks, shopper_carts, shopper_purchases,
                           shopper_paid_ratio (the user's days
                           before the decision, :mod:`pricewave.feature_views.shopper_profile`)
context                    base_price, event_time (epoch ms, UTC), user_key, is_holiday
                           (:func:`is_holiday` of the holiday calendar)
=========================  ============================================================

Transforms: counts → log1p(max(x, 0)); conversions clipped to [0, 1];
competitor_gap = (base_price − competitor_min_price) / base_price clipped to [−1, 1]
(0 without competitors); staleness → log1p(hours), capped at a week; mean_rating → (r − 3) / 2 in
[−1, 1]; sentiment clipped to [−1, 1]; price_exposure = mean_price_seen / base_price clipped to
[0, 5]; recency → log1p(seconds), capped at a day; time of day and day of week as sin/cos.
The shopper profile, shrunk toward the population when the history is thin: shopper_history =
log1p(views); shopper_conversion, shopper_cart_rate and shopper_click_rate = log of
(events + 20 × prior) / (views + 20) over the prior, with priors 5 % purchases, 10 % carts and 40 %
clicks per view (0 for a shopper with no history, negative for one who buys, carts or clicks less
than the prior: the funnel's steps before a purchase reveal the same response with more events);
shopper_paid_ratio = log
of (purchases × paid_ratio + 3) / (purchases + 3) (0 without purchases, negative for one who buys
when prices are low). Both are clipped to [−3, 3].
Competition, review, session and profile features that are unknown become 0 (no competitor, no
review, no session, no history are ordinary). Session and profile features are 0 and
``is_personalized`` is 0 for the sku-level (non-personalized) decision, which has no ``user_key``.
A row whose required demand features are unknown or absent (or lacks base_price / event_time) is
flagged in the missing mask: the kill switch then falls back to the base price.

Protected attributes (:data:`pricewave.privacy.PROTECTED_ATTRIBUTES` and look-alikes such as
``AgeGroup`` or ``customer_gender``) must never become inputs: :func:`assert_no_protected_inputs`.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"base_price": [20.0], "event_time": [1735689600000], "views_5m": [9],
    ...     "carts_5m": [1], "purchases_5m": [0], "conversion_5m": [0.0], "views_1h": [90],
    ...     "purchases_1h": [3], "conversion_1h": [0.033], "competitor_min_price": [18.0]})
    >>> x, missing = build_feature_matrix(frame)
    >>> x.shape == (1, len(FEATURE_NAMES)), x.dtype.name, bool(missing[0])
    (True, 'float32', False)
    >>> round(float(x[0, FEATURE_NAMES.index("competitor_gap")]), 3)
    0.1
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pricewave.config import HolidayPeriod
from pricewave.errors import DataError
from pricewave.privacy import PROTECTED_ATTRIBUTES

FEATURE_SPEC_VERSION = 2
EMBEDDING_DIM = 384
EMBEDDING_PROJECTION_DIM = 8

DEMAND_FEATURES: tuple[str, ...] = (
    "views_5m",
    "carts_5m",
    "purchases_5m",
    "conversion_5m",
    "views_1h",
    "purchases_1h",
    "conversion_1h",
)
COMPETITION_FEATURES: tuple[str, ...] = ("competitor_gap", "competitor_offers", "competitor_staleness_s")
REVIEW_FEATURES: tuple[str, ...] = ("sentiment", "mean_rating", "review_count")
SESSION_FEATURES: tuple[str, ...] = ("recent_views", "recent_carts", "price_exposure", "recency_s", "is_personalized")
SHOPPER_FEATURES: tuple[str, ...] = (
    "shopper_history",
    "shopper_conversion",
    "shopper_cart_rate",
    "shopper_click_rate",
    "shopper_paid_ratio",
)
TIME_FEATURES: tuple[str, ...] = ("hour_sin", "hour_cos", "dow_sin", "dow_cos", "is_holiday")

FEATURE_NAMES: tuple[str, ...] = (
    DEMAND_FEATURES + COMPETITION_FEATURES + REVIEW_FEATURES + SESSION_FEATURES + SHOPPER_FEATURES + TIME_FEATURES
)
N_FEATURES = len(FEATURE_NAMES)

# Columns read from the input frame. Required ones flag the row as missing when NaN.
REQUIRED_COLUMNS: tuple[str, ...] = (*DEMAND_FEATURES, "base_price", "event_time")
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "competitor_min_price",
    "competitor_offers",
    "competitor_staleness_s",
    "sentiment",
    "mean_rating",
    "review_count",
    "recent_views",
    "recent_carts",
    "mean_price_seen",
    "recency_s",
    "shopper_views",
    "shopper_clicks",
    "shopper_carts",
    "shopper_purchases",
    "shopper_paid_ratio",
    "user_key",
    "is_holiday",
)
COUNT_COLUMNS = frozenset(
    {"views_5m", "carts_5m", "purchases_5m", "views_1h", "purchases_1h", "competitor_offers", "review_count"}
)

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday = 0
_WEEK_S = 7 * 24 * 3600.0
# The shopper profile's shrinkage: a thin history counts as this many views at the prior conversion,
# a paid ratio as this many purchases at 1 (paid what was shown).
SHOPPER_PRIOR_VIEWS = 20.0
SHOPPER_PRIOR_RATES = {"shopper_purchases": 0.05, "shopper_carts": 0.10, "shopper_clicks": 0.40}
SHOPPER_PRIOR_PURCHASES = 3.0
_SHOPPER_RATE_FEATURES = {
    "shopper_conversion": "shopper_purchases",
    "shopper_cart_rate": "shopper_carts",
    "shopper_click_rate": "shopper_clicks",
}
_DAY_S = 24 * 3600.0

_PROTECTED_COMPACT = frozenset(name.replace("_", "") for name in PROTECTED_ATTRIBUTES)
_PROTECTED_TOKENS = frozenset(PROTECTED_ATTRIBUTES) | {"agegroup", "agebucket", "birth", "dob", "zipcode", "postcode"}


def feature_spec() -> dict[str, Any]:
    """The feature spec saved with every model artifact (``feature_spec.json``)."""
    return {
        "version": FEATURE_SPEC_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "embedding_dim": EMBEDDING_DIM,
        "embedding_projection_dim": EMBEDDING_PROJECTION_DIM,
    }


def _normalize(name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")


def is_protected(name: str) -> bool:
    """True when ``name`` is, or looks like, a protected attribute (``age``, ``AgeGroup``, ``user_zip``...)."""
    normalized = _normalize(name)
    tokens = normalized.split("_")
    if normalized in PROTECTED_ATTRIBUTES or normalized.replace("_", "") in _PROTECTED_COMPACT:
        return True
    if any(token in _PROTECTED_TOKENS for token in tokens):
        return True
    pairs = {f"{a}_{b}" for a, b in itertools.pairwise(tokens)}
    return bool(pairs & PROTECTED_ATTRIBUTES)


def assert_no_protected_inputs(names: Iterable[str]) -> None:
    """Raise when any model input name is a protected attribute (or looks like one).

    Raises:
        DataError: Naming the offending inputs; remove them from the feature spec.
    """
    offending = sorted({name for name in names if is_protected(name)})
    if offending:
        raise DataError(
            f"protected attributes must not be model inputs: {', '.join(offending)}; "
            "remove them from the feature spec (see pricewave.privacy.PROTECTED_ATTRIBUTES)"
        )


assert_no_protected_inputs(FEATURE_NAMES)


def numeric_column(frame: pd.DataFrame, name: str) -> npt.NDArray[np.float64]:
    """A column as float64 with NaN for missing or non-numeric values (all NaN when absent)."""
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    column = frame[name]
    if column.dtype.kind in "iuf":  # fast path: already numeric
        return np.asarray(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def personalized_rows(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Rows that are personalized offers: a non-empty ``user_key``."""
    if "user_key" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    keys = frame["user_key"]
    return np.asarray(keys.notna().to_numpy() & (keys != "").to_numpy(), dtype=bool)


def build_feature_matrix(frame: pd.DataFrame) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Model inputs for each row of ``frame``, in :data:`FEATURE_NAMES` order.

    Args:
        frame: One row per decision with the raw columns in the module docstring. Any column
            may be absent or hold NaN: unknown values become 0, and rows whose required
            sku-level columns are unknown (NaN or absent) are flagged.

    Returns:
        ``(x, missing)``: float32 array of shape (n, len(FEATURE_NAMES)) with no NaN, and a bool
        array (n,) that is True where required sku-level features were unknown.
    """
    n = len(frame)
    out = np.zeros((n, N_FEATURES), dtype=np.float64)
    col = FEATURE_NAMES.index
    missing = np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        for name in DEMAND_FEATURES:
            raw = numeric_column(frame, name)
            missing |= np.isnan(raw)
            out[:, col(name)] = np.log1p(np.maximum(raw, 0)) if name in COUNT_COLUMNS else np.clip(raw, 0, 1)

        base = numeric_column(frame, "base_price")
        event_ms = numeric_column(frame, "event_time")
        missing |= ~(np.isfinite(base) & (base > 0)) | ~np.isfinite(event_ms)

        comp_min = numeric_column(frame, "competitor_min_price")
        gap = np.clip((base - comp_min) / base, -1, 1)
        out[:, col("competitor_gap")] = np.where(comp_min > 0, gap, 0)
        out[:, col("competitor_offers")] = np.log1p(np.maximum(numeric_column(frame, "competitor_offers"), 0))
        staleness_h = np.clip(numeric_column(frame, "competitor_staleness_s"), 0, _WEEK_S) / 3600
        out[:, col("competitor_staleness_s")] = np.log1p(staleness_h)

        out[:, col("sentiment")] = np.clip(numeric_column(frame, "sentiment"), -1, 1)
        out[:, col("mean_rating")] = (np.clip(numeric_column(frame, "mean_rating"), 1, 5) - 3) / 2
        out[:, col("review_count")] = np.log1p(np.maximum(numeric_column(frame, "review_count"), 0))

        personalized = personalized_rows(frame)
        out[:, col("recent_views")] = np.log1p(np.maximum(numeric_column(frame, "recent_views"), 0))
        out[:, col("recent_carts")] = np.log1p(np.maximum(numeric_column(frame, "recent_carts"), 0))
        out[:, col("price_exposure")] = np.clip(numeric_column(frame, "mean_price_seen") / base, 0, 5)
        out[:, col("recency_s")] = np.log1p(np.clip(numeric_column(frame, "recency_s"), 0, _DAY_S))
        out[:, col("is_personalized")] = personalized
        shopper_views = np.maximum(np.nan_to_num(numeric_column(frame, "shopper_views")), 0)
        out[:, col("shopper_history")] = np.log1p(shopper_views)
        for feature, count_column in _SHOPPER_RATE_FEATURES.items():
            prior = SHOPPER_PRIOR_RATES[count_column]
            count = np.maximum(np.nan_to_num(numeric_column(frame, count_column)), 0)
            shrunk = (count + SHOPPER_PRIOR_VIEWS * prior) / (shopper_views + SHOPPER_PRIOR_VIEWS)
            out[:, col(feature)] = np.clip(np.log(shrunk / prior), -3, 3)
        shopper_purchases = np.maximum(np.nan_to_num(numeric_column(frame, "shopper_purchases")), 0)
        paid_ratio = numeric_column(frame, "shopper_paid_ratio")
        paid_ratio = np.where(np.isfinite(paid_ratio) & (paid_ratio > 0), paid_ratio, 1.0)
        shrunk_ratio = (shopper_purchases * paid_ratio + SHOPPER_PRIOR_PURCHASES) / (
            shopper_purchases + SHOPPER_PRIOR_PURCHASES
        )
        out[:, col("shopper_paid_ratio")] = np.clip(np.log(shrunk_ratio), -3, 3)
        session = [col(name) for name in (*SESSION_FEATURES, *SHOPPER_FEATURES)]
        out[:, session] = np.where(personalized[:, None], out[:, session], 0)

        hour = (event_ms % _DAY_MS) / _HOUR_MS
        day = (np.floor(event_ms / _DAY_MS) + _EPOCH_WEEKDAY) % 7 + hour / 24
        out[:, col("hour_sin")] = np.sin(2 * np.pi * hour / 24)
        out[:, col("hour_cos")] = np.cos(2 * np.pi * hour / 24)
        out[:, col("dow_sin")] = np.sin(2 * np.pi * day / 7)
        out[:, col("dow_cos")] = np.cos(2 * np.pi * day / 7)
        out[:, col("is_holiday")] = numeric_column(frame, "is_holiday") > 0
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32), missing


def is_holiday(calendar: Iterable[HolidayPeriod], event_ms: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """The ``is_holiday`` input for each epoch-ms time: True inside any period of ``calendar``.

    The one definition serving and training share: the job's pricers evaluate the configured
    calendar (``Settings.holidays``), training a simulated history's scenario calendar
    (:meth:`pricewave.simulator.scenario.Scenario.holiday_calendar`), else the configured one.

    Example:
        >>> from pricewave.config import HolidayPeriod
        >>> sale = HolidayPeriod(name="sale", start="2026-11-27", end="2026-11-28")
        >>> is_holiday([sale], [1795737599999, 1795737600000, 1795823999999, 1795824000000]).tolist()
        [False, True, True, False]
    """
    times = np.asarray(event_ms, dtype=np.float64)
    flags = np.zeros(times.shape, dtype=bool)
    for period in calendar:
        flags |= (times >= period.start_ms) & (times < period.end_ms)
    return flags


def build_embedding_matrix(frame: pd.DataFrame) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """The review embeddings as a float32 (n, 384) array (zeros where absent) and a has-embedding mask.

    A value that is not a sequence of exactly :data:`EMBEDDING_DIM` finite floats counts as absent.
    """
    n = len(frame)
    out = np.zeros((n, EMBEDDING_DIM), dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    if "review_embedding" not in frame.columns:
        return out, present
    values = frame["review_embedding"].tolist()
    rows = [i for i, value in enumerate(values) if value is not None and not isinstance(value, float | str)]
    if not rows:
        return out, present
    try:  # fast path: every present value is a well-formed vector
        stacked = np.asarray([values[i] for i in rows], dtype=np.float32)
        if stacked.shape == (len(rows), EMBEDDING_DIM):
            good = np.isfinite(stacked).all(axis=1)
            out[np.asarray(rows)[good]] = stacked[good]
            present[np.asarray(rows)[good]] = True
            return out, present
    except (TypeError, ValueError):
        pass
    for i in rows:
        try:
            vector = np.asarray(values[i], dtype=np.float32)
        except (TypeError, ValueError):
            continue
        if vector.shape == (EMBEDDING_DIM,) and np.isfinite(vector).all():
            out[i] = vector
            present[i] = True
    return out, present
