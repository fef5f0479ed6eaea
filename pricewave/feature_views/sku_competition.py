"""The ``sku_competition`` feature view: its streaming SQL (the job) and its pandas computation (training,
evaluation), side by side. Per sku and window: the cheapest in-stock competitor, the median, how many, how stale.

Offline: :func:`sku_competition_frame` (``sku_competition``): per sku and window end (HOP over
  ``short_s``): the latest observation of each competitor in the window, kept when in stock, then
  min / median / count and staleness = seconds since the OLDEST of those latest observations
  (the schema's definition), to the millisecond. ``competitor_gap`` = (our latest price − min) / min, our price being
  the latest ``price_seen`` before the window end (NaN when unknown). ``event_time`` = the window
  end: every observation folded in is older, so a point-in-time join never sees the future.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from pricewave.feature_views.windows import (
    WindowOptions,
    dedupe,
    event_times,
    latest_before,
    window_queries,
)
from pricewave.schemas import load_schema
from pricewave.sql import interval, seconds_between

COLUMNS: tuple[str, ...] = tuple(load_schema("sku_competition").field_names)
"""The view's columns (``schemas/sku_competition``): what the pandas side computes."""


# What the job pushes (its window time goes as event_time separately). competitor_gap needs our own
# price, which training derives offline: the stream does not compute it.
PUSHED_COLUMNS = tuple(name for name in COLUMNS if name not in ("competitor_gap", "event_time"))


def sku_competition_view(options: WindowOptions) -> str:
    """Per-sku competition over the short horizon: latest price per competitor, then min/median.

    A window Top-1 keeps the latest quote of each (sku, competitor) in the window; a window
    aggregation then takes, across the competitors in stock, the cheapest, the median, how many
    are live, and the staleness: the age of the OLDEST of those quotes at the window end, in
    seconds to the millisecond (``window_time`` is the end less 1 ms), as the pandas side computes it.
    """
    return f"""
CREATE TEMPORARY VIEW `sku_competition` AS
SELECT `sku`, `window_start`, `window_end`, `window_time`,
  MIN(`latest_price`) AS `competitor_min_price`,
  PERCENTILE(`latest_price`, 0.5) AS `competitor_median_price`,
  COUNT(*) AS `competitor_offers`,
  {seconds_between("MIN(`latest_time`)", "`window_time`")} + 0.001 AS `competitor_staleness_s`
FROM (
  SELECT `sku`, `window_start`, `window_end`, `window_time`, `price` AS `latest_price`, `in_stock`,
    `event_time` AS `latest_time`,
    ROW_NUMBER() OVER (
      PARTITION BY `window_start`, `window_end`, `sku`, `competitor` ORDER BY `event_time` DESC) AS `recency`
  FROM TABLE(HOP(TABLE `valid_competitor_prices`, DESCRIPTOR(`event_time`),
    {interval(options.window_slide_s)}, {interval(options.short_horizon_s)}))
) WHERE `recency` = 1 AND `in_stock`
GROUP BY `sku`, `window_start`, `window_end`, `window_time`"""


def sku_competition_frame(
    prices: pd.DataFrame,
    slide_s: int = 60,
    short_s: int = 300,
    *,
    our_prices: pd.DataFrame | None = None,
    window_ends: Iterable[int] | None = None,
) -> pd.DataFrame:
    """The ``sku_competition`` rows of a competitor-price history (see the module docstring).

    Args:
        prices: ``competitor_price`` records (``event_id``, ``sku``, ``competitor``, ``price``,
            ``in_stock``, ``event_time``).
        slide_s: Window slide.
        short_s: Window size (the short horizon).
        our_prices: Our shown prices (``sku``, ``event_time``, and ``price`` or ``price_seen``,
            e.g. the click history) for ``competitor_gap``; NaN gap without them.
        window_ends: Only these window ends (epoch ms); default every aligned non-empty window.

    Returns:
        One row per (sku, window end) with at least one in-stock competitor, columns
        :data:`COLUMNS`.
    """
    if short_s % slide_s or short_s <= 0:
        raise ValueError("short_s must be a positive whole multiple of slide_s")
    prices = dedupe(prices, "event_id")
    empty = pd.DataFrame({name: pd.Series(dtype="float64") for name in COLUMNS}).astype(
        {"sku": object, "competitor_offers": "int64", "event_time": "int64"}
    )
    if prices.empty:
        return empty
    slide_ms, short_ms = slide_s * 1000, short_s * 1000
    sku_names, codes, times, q_codes, q_ends = window_queries(prices, slide_ms, short_ms, window_ends)
    if q_ends.size == 0:
        return empty
    competitor_codes, competitor_names = pd.factorize(prices["competitor"])
    n_competitors = len(competitor_names)
    t0 = int(min(times.min(), q_ends.min() - short_ms)) - 1
    span = int(max(times.max(), q_ends.max()) - t0) + 2
    pair_codes = codes * n_competitors + competitor_codes.astype(np.int64)
    price_values = pd.to_numeric(prices["price"]).to_numpy(dtype=np.float64)
    in_stock = prices["in_stock"].fillna(False).to_numpy(dtype=bool)
    latest_price = np.full((q_ends.size, n_competitors), np.nan)
    latest_time = np.full((q_ends.size, n_competitors), np.nan)
    for competitor in range(n_competitors):
        index, valid = latest_before(pair_codes, times, q_codes * n_competitors + competitor, q_ends, t0, span)
        valid &= times[index] >= q_ends - short_ms
        valid &= in_stock[index]
        latest_price[valid, competitor] = price_values[index[valid]]
        latest_time[valid, competitor] = times[index[valid]]
    offers = np.sum(~np.isnan(latest_price), axis=1)
    keep = offers > 0
    with np.errstate(all="ignore"):
        minimum = np.nanmin(np.where(keep[:, None], latest_price, 0.0), axis=1)
        median = np.nanmedian(np.where(keep[:, None], latest_price, 0.0), axis=1)
        oldest = np.nanmin(np.where(keep[:, None], latest_time, 0.0), axis=1)
    gap = np.full(q_ends.size, np.nan)
    if our_prices is not None and not our_prices.empty:
        ours = dedupe(our_prices, "event_id")
        column = "price" if "price" in ours.columns else "price_seen"
        our_codes = pd.Categorical(ours["sku"], categories=sku_names).codes.astype(np.int64)
        known = our_codes >= 0
        our_times = event_times(ours)[known]
        our_values = pd.to_numeric(ours[column]).to_numpy(dtype=np.float64)[known]
        if our_times.size:
            o_t0 = min(t0, int(our_times.min()) - 1)
            o_span = int(max(span + t0, int(our_times.max()) + 2) - o_t0)
            index, valid = latest_before(our_codes[known], our_times, q_codes, q_ends, o_t0, o_span)
            with np.errstate(all="ignore"):
                gap = np.where(valid, (our_values[index] - minimum) / minimum, np.nan)
    frame = pd.DataFrame(
        {
            "sku": np.asarray(sku_names)[q_codes],
            "competitor_min_price": minimum,
            "competitor_median_price": median,
            "competitor_offers": offers.astype(np.int64),
            "competitor_staleness_s": (q_ends - oldest) / 1000.0,
            "competitor_gap": gap,
            "event_time": q_ends,
        }
    )[keep]
    return frame.sort_values(["event_time", "sku"], kind="stable").reset_index(drop=True)
