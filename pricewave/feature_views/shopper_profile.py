"""The ``shopper_profile`` feature view: its streaming SQL (the job) and its pandas computation (training,
evaluation), side by side. Per pseudonymous user, their revealed price response beyond a session.

Both engines compute, per click event, over the user's click events in the last ``horizon_s`` (the
profile horizon, 7 days by default) up to and including it (both ends inclusive; events at the
same millisecond are all in): views, clicks, carts and purchases, and the **paid ratio**: the geometric
mean price the user paid over the geometric mean price they were shown at views
(``exp(mean ln paid − mean ln shown)``; 1 without a purchase or a view). A shopper who converts
less than others at the prices shown, or buys mostly when prices are low, reveals a strong price
response; the model reads the counts as a conversion shrunk toward the population
(:func:`pricewave.pricing.features.build_feature_matrix`), so a thin history says little.
``event_time`` = the click.

In the job the profile is Flink keyed state: an event-time OVER ``RANGE`` window per user, which
keeps a user's clicks of the horizon and drops older ones (the retention limit). Each purchase
pushes the user's profile to the online store (``shopper_profile``: the profile as of the user's
latest purchase, for channels and audits; ``pricewave profile delete`` removes it); the offer
pricer reads it in-stream, as of the click (:func:`before_event_columns`).

Example:
    >>> import pandas as pd
    >>> clicks = pd.DataFrame({"event_id": ["a", "b", "c", "d"], "user_key": "u1", "sku": "A",
    ...     "event_type": ["view", "view", "purchase", "view"], "price_seen": [10.0, 8.0, 8.0, 10.0],
    ...     "event_time": [0, 60_000, 90_000, 120_000]})
    >>> profile = shopper_profile_frame(clicks)
    >>> profile[["shopper_views", "shopper_purchases"]].values.tolist()
    [[1, 0], [2, 0], [2, 1], [3, 1]]
    >>> [round(ratio, 3) for ratio in profile["shopper_paid_ratio"]]
    [1.0, 1.0, 0.894, 0.862]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pricewave.feature_views.windows import TrailingRangeWindow, dedupe, event_times
from pricewave.schemas import load_schema
from pricewave.sql import interval, quote

COLUMNS: tuple[str, ...] = tuple(load_schema("shopper_profile").field_names)
"""The view's columns (``schemas/shopper_profile``): what the pandas side computes."""

PROFILE_COLUMNS: tuple[str, ...] = (
    "shopper_views",
    "shopper_clicks",
    "shopper_carts",
    "shopper_purchases",
    "shopper_paid_ratio",
)
"""The profile itself: :data:`COLUMNS` less the entity key and the event time."""

PUSHED_COLUMNS = COLUMNS  # the job pushes every column, at each purchase

PUSH_EVENT_TYPE = "purchase"
"""The click event that pushes a profile to the online store (what changes it most)."""

DEFAULT_HORIZON_S = 7 * 24 * 3600


def shopper_profile_view(horizon_s: int) -> str:
    """Per click, the user's profile over the horizon (an event-time OVER ``RANGE`` window per user).

    The view keeps each click's own columns, so later stages (the user's session, the offer) read
    the profile off the same row without a join.
    """

    def count(kind: str) -> str:
        return f"SUM(CASE WHEN `event_type` = '{kind}' THEN 1 ELSE 0 END) OVER w"

    def mean_log_price(kind: str) -> str:
        return f"AVG(CASE WHEN `event_type` = '{kind}' THEN LN(`price_seen`) END) OVER w"

    frame = f"RANGE BETWEEN {interval(horizon_s)} PRECEDING AND CURRENT ROW"
    return f"""
CREATE TEMPORARY VIEW `shopper_profiles` AS
SELECT `event_id`, `event_type`, `user_key`, `session_id`, `sku`, `price_seen`, `quantity`, `channel`, `event_time`,
  {count("view")} AS `shopper_views`,
  {count("click")} AS `shopper_clicks`,
  {count("add_to_cart")} AS `shopper_carts`,
  {count("purchase")} AS `shopper_purchases`,
  COALESCE(EXP({mean_log_price("purchase")} - {mean_log_price("view")}), CAST(1 AS DOUBLE)) AS `shopper_paid_ratio`
FROM `unique_clicks`
WINDOW w AS (PARTITION BY `user_key` ORDER BY `event_time` {frame})"""


def before_event_columns() -> str:
    """SQL: the profile as of just before a click (its own view or cart taken out), for the offer pricer.

    Training joins the profile point-in-time at the decision, 1 ms before the view it prices, so
    the view itself is not in it; the same holds at serving this way. (The paid ratio keeps the
    click's own price among the views': one of the horizon's views, a difference that shrinks with
    the history.)
    """
    return (
        "`shopper_views` - CASE WHEN `event_type` = 'view' THEN 1 ELSE 0 END AS `shopper_views`, "
        "`shopper_carts` - CASE WHEN `event_type` = 'add_to_cart' THEN 1 ELSE 0 END AS `shopper_carts`, "
        f"{quote('shopper_clicks')}, {quote('shopper_purchases')}, {quote('shopper_paid_ratio')}"
    )


def before_event_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The pandas side of :func:`before_event_columns`: profile rows at clicks, the click's own view or cart taken out.

    Args:
        rows: One row per click with its ``event_type`` and the profile :data:`PROFILE_COLUMNS` as of it
            (a :func:`shopper_profile_frame` row, which counts the click itself).
    """
    return rows.assign(
        shopper_views=rows["shopper_views"] - (rows["event_type"] == "view").astype("int64"),
        shopper_carts=rows["shopper_carts"] - (rows["event_type"] == "add_to_cart").astype("int64"),
    )


def push_filter() -> str:
    """SQL: the rows of ``shopper_profiles`` the job pushes to the online store."""
    return f"`event_type` = '{PUSH_EVENT_TYPE}'"


def shopper_profile_frame(clicks: pd.DataFrame, horizon_s: int = DEFAULT_HORIZON_S) -> pd.DataFrame:
    """The ``shopper_profile`` rows of a click history: one per click event (see the module docstring).

    Args:
        clicks: ``click_event`` records (``event_id``, ``event_type``, ``user_key``, ``price_seen``,
            ``event_time``).
        horizon_s: How far back the profile reaches (the job's ``--shopper-horizon``).

    Returns:
        Columns :data:`COLUMNS`, sorted by event time.
    """
    clicks = dedupe(clicks, "event_id")
    if clicks.empty:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in COLUMNS}).astype(
            {
                "user_key": object,
                "shopper_views": "int64",
                "shopper_clicks": "int64",
                "shopper_carts": "int64",
                "shopper_purchases": "int64",
                "event_time": "int64",
            }
        )
    kind = clicks["event_type"].to_numpy()
    frame = pd.DataFrame(
        {
            "user": pd.factorize(clicks["user_key"])[0].astype(np.int64),
            "user_key": clicks["user_key"].to_numpy(),
            "time": event_times(clicks),
            "view": kind == "view",
            "click": kind == "click",
            "cart": kind == "add_to_cart",
            "purchase": kind == "purchase",
            "log_price": np.log(pd.to_numeric(clicks["price_seen"]).to_numpy(dtype=np.float64)),
        }
    ).sort_values(["user", "time"], kind="stable")
    window = TrailingRangeWindow(frame["user"].to_numpy(), frame["time"].to_numpy(), horizon_s * 1000)
    view, purchase = frame["view"].to_numpy(), frame["purchase"].to_numpy()
    log_price = frame["log_price"].to_numpy()
    views = window.sum(view.astype(np.float64))
    purchases = window.sum(purchase.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        log_ratio = (
            window.sum(np.where(purchase, log_price, 0.0)) / purchases
            - window.sum(np.where(view, log_price, 0.0)) / views
        )
    out = pd.DataFrame(
        {
            "user_key": frame["user_key"].to_numpy(),
            "shopper_views": views.astype(np.int64),
            "shopper_clicks": window.sum(frame["click"].to_numpy().astype(np.float64)).astype(np.int64),
            "shopper_carts": window.sum(frame["cart"].to_numpy().astype(np.float64)).astype(np.int64),
            "shopper_purchases": purchases.astype(np.int64),
            "shopper_paid_ratio": np.where((views > 0) & (purchases > 0), np.exp(log_ratio), 1.0),
            "event_time": frame["time"].to_numpy(),
        }
    )
    return out.sort_values(["event_time", "user_key"], kind="stable").reset_index(drop=True)
