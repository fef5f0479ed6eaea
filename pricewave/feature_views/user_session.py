"""The ``user_session`` feature view: its streaming SQL (the job) and its pandas computation (training,
evaluation), side by side. Per view or add-to-cart, the user's session so far (views, carts, prices
seen, dwell, recency).

Both engines compute, per event of :data:`SESSION_EVENT_TYPES` (the events a personalized offer is
priced on), over the user's click events in the last ``horizon_s`` (30 min) up to and including it
(both ends inclusive; events at the same millisecond are all in): views and carts, the mean price
seen over those views (0 without views), dwell (first to this event) and recency (seconds since
the user's previous click event at an earlier millisecond, however long ago; 0 at a user's first
millisecond; every click at one millisecond gets the same). ``event_time`` = the event.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pricewave.feature_views.windows import (
    TrailingRangeWindow,
    WindowOptions,
    dedupe,
    event_times,
)
from pricewave.schemas import load_schema
from pricewave.sql import interval, quote, seconds_between, sql_string

COLUMNS: tuple[str, ...] = tuple(load_schema("user_session").field_names)
"""The view's columns (``schemas/user_session``): what the pandas side computes."""


# Unlike the other views, the job pushes nothing of this one to the online store: nothing reads a
# session there (the offer pricer gets it in-stream, training computes it offline), and the push
# cost one Python call per view or add-to-cart (about 110 µs, BENCHMARKS.md).

SESSION_EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart")
"""The click events that get a session row: the job prices an offer on each."""


def session_event_filter() -> str:
    """SQL: the rows of ``user_sessions`` the job prices and pushes (:data:`SESSION_EVENT_TYPES`)."""
    return f"`event_type` IN ({', '.join(sql_string(kind) for kind in SESSION_EVENT_TYPES)})"


def user_session_view(options: WindowOptions, source: str = "unique_clicks", carried: str = "") -> str:
    """Per click, the user's session so far (OVER window on event time, per pseudonymous user).

    A first OVER window hands each click the time of the user's previous click at an earlier
    millisecond (``recency_s``): ``previous_time``, a Java aggregate (``udfs/java``) over a RANGE
    window, so clicks at the same millisecond get the same value whatever their arrival order (a
    ROWS window's preceding row is the one that arrived before); it keeps two longs per user. The
    session window (RANGE too: the events at the same millisecond are all in) then counts over it.

    Args:
        options: The window lengths (``session_gap_s``).
        source: The view of deduplicated clicks to read (the job reads ``shopper_profiles``, clicks
            with their shopper profile).
        carried: SQL select items of ``source`` that each session row carries on (e.g. the profile).
    """
    session = interval(options.session_gap_s)
    carried_items = f", {carried}" if carried else ""
    return f"""
CREATE TEMPORARY VIEW `user_sessions` AS
SELECT `user_key`, `sku`, `event_type`, `event_time`,
  SUM(CASE WHEN `event_type` = 'view' THEN 1 ELSE 0 END) OVER w AS `recent_views`,
  SUM(CASE WHEN `event_type` = 'add_to_cart' THEN 1 ELSE 0 END) OVER w AS `recent_carts`,
  COALESCE(AVG(CASE WHEN `event_type` = 'view' THEN `price_seen` END) OVER w, CAST(0 AS DOUBLE)) AS `mean_price_seen`,
  {seconds_between("MIN(`event_time`) OVER w", "`event_time`")} AS `dwell_s`,
  {seconds_between("COALESCE(`previous_time`, `event_time`)", "`event_time`")} AS `recency_s`{carried_items}
FROM (
  SELECT *, `previous_time`(`event_time`) OVER (
    PARTITION BY `user_key` ORDER BY `event_time` RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS `previous_time`
  FROM {quote(source)}
)
WINDOW w AS (PARTITION BY `user_key` ORDER BY `event_time` RANGE BETWEEN {session} PRECEDING AND CURRENT ROW)"""


def user_session_frame(clicks: pd.DataFrame, horizon_s: int = 1800) -> pd.DataFrame:
    """The ``user_session`` rows of a click history: one per view or add-to-cart (see the module docstring).

    Args:
        clicks: ``click_event`` records (``event_id``, ``event_type``, ``user_key``,
            ``price_seen``, ``event_time``).
        horizon_s: How far back "recent" reaches (30 minutes: the ``user_session`` TTL).

    Returns:
        Columns :data:`COLUMNS`, sorted by event time.
    """
    clicks = dedupe(clicks, "event_id")
    if clicks.empty:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in COLUMNS}).astype(
            {"user_key": object, "recent_views": "int64", "recent_carts": "int64", "event_time": "int64"}
        )
    frame = pd.DataFrame(
        {
            "user": pd.factorize(clicks["user_key"])[0].astype(np.int64),
            "user_key": clicks["user_key"].to_numpy(),
            "time": event_times(clicks),
            "view": (clicks["event_type"] == "view").to_numpy(),
            "cart": (clicks["event_type"] == "add_to_cart").to_numpy(),
            "session_row": clicks["event_type"].isin(SESSION_EVENT_TYPES).to_numpy(),
            "price": pd.to_numeric(clicks["price_seen"]).to_numpy(dtype=np.float64),
        }
    ).sort_values(["user", "time"], kind="stable")
    t = frame["time"].to_numpy()
    window = TrailingRangeWindow(frame["user"].to_numpy(), t, horizon_s * 1000)
    view = frame["view"].to_numpy()
    views = window.sum(view.astype(np.float64))
    carts = window.sum(frame["cart"].to_numpy().astype(np.float64))
    price_sum = window.sum(np.where(view, np.nan_to_num(frame["price"].to_numpy()), 0.0))
    # The user's latest click at an earlier millisecond: the event before the first one at t.
    previous_time, has_previous = window.previous_time()
    out = pd.DataFrame(
        {
            "user_key": frame["user_key"].to_numpy(),
            "recent_views": views.astype(np.int64),
            "recent_carts": carts.astype(np.int64),
            "mean_price_seen": price_sum / np.maximum(views, 1),
            "dwell_s": (t - t[window.first]) / 1000.0,
            "recency_s": np.where(has_previous, (t - previous_time) / 1000.0, 0.0),
            "event_time": t,
        }
    )[frame["session_row"].to_numpy()]
    return out.sort_values(["event_time", "user_key"], kind="stable").reset_index(drop=True)
