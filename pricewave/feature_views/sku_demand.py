"""The ``sku_demand`` feature view: its streaming SQL (the job) and its pandas computation (training,
evaluation), side by side. Per sku and window: views, clicks, carts and purchases, distinct users
and conversion at two horizons.

Offline: :func:`sku_demand_frame` (``sku_demand``): per sku and window end, HOP windows sliding every
  ``slide_s`` seconds, aligned to the epoch like Flink's: views/clicks/carts/purchases and distinct
  viewers over ``[end − short_s, end)`` (``*_5m``) and ``[end − long_s, end)`` (``*_1h``),
  conversion = purchases / max(views, 1). A row exists for each window end whose long window holds
  at least one click event of the sku (as a window operator only emits non-empty windows).
  ``event_time`` = the window end.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from pricewave.feature_views.windows import (
    GroupedTimes,
    WindowOptions,
    dedupe,
    distinct_count,
    window_queries,
)
from pricewave.schemas import load_schema
from pricewave.sql import interval, quote

COLUMNS: tuple[str, ...] = tuple(load_schema("sku_demand").field_names)
"""The view's columns (``schemas/sku_demand``): what the pandas side computes."""


# What the job pushes (its window time goes as event_time separately).
PUSHED_COLUMNS = tuple(name for name in COLUMNS if name != "event_time")


DEMAND_EVENT_TYPES = {"view": "views", "click": "clicks", "add_to_cart": "carts", "purchase": "purchases"}


def _demand_horizon_view(name: str, suffix: str, size_s: int, options: WindowOptions, *, mean_price: bool) -> str:
    """Per-sku counts over one horizon: a HOP window whose aggregates never mention the window.

    ``unique_users`` counts the distinct users who viewed the sku (the schema's definition), as the
    pandas side does; the window exists when it holds any click event of the sku.

    Nothing window-dependent inside the aggregate arguments lets Flink slice the window: each click
    updates one slice, and a firing window merges its slices, instead of the click being copied
    into every window (size / slide times) it belongs to.
    """
    counts = ",\n  ".join(
        f"SUM(CASE WHEN `event_type` = '{kind}' THEN 1 ELSE 0 END) AS `{column}_{suffix}`"
        for kind, column in DEMAND_EVENT_TYPES.items()
    )
    price = ",\n  AVG(`price_seen`) AS `mean_price_seen_1h`" if mean_price else ""
    return f"""
CREATE TEMPORARY VIEW {quote(name)} AS
SELECT `sku`, `window_start`, `window_end`, `window_time`,
  {counts},
  COUNT(DISTINCT CASE WHEN `event_type` = 'view' THEN `user_key` END) AS `unique_users_{suffix}`{price}
FROM TABLE(HOP(TABLE `unique_clicks`, DESCRIPTOR(`event_time`),
  {interval(options.window_slide_s)}, {interval(size_s)}))
GROUP BY `sku`, `window_start`, `window_end`, `window_time`"""


def sku_demand_views(options: WindowOptions) -> list[str]:
    """Per-sku demand at two horizons: one sliced HOP window per horizon, joined on window time.

    Both windows slide together, so each long-horizon window meets the short-horizon window that
    ends with it; a sku without clicks in the short horizon gets zeros there.
    """
    short = [f"COALESCE(s.`{column}_5m`, 0) AS `{column}_5m`" for column in DEMAND_EVENT_TYPES.values()]
    long = [f"l.`{column}_1h`" for column in DEMAND_EVENT_TYPES.values()]
    conversion = "CAST({p} AS DOUBLE) / GREATEST({v}, 1)"
    columns = ",\n  ".join(
        [
            *short,
            *long,
            "COALESCE(s.`unique_users_5m`, 0) AS `unique_users_5m`",
            "l.`unique_users_1h`",
            conversion.format(p="COALESCE(s.`purchases_5m`, 0)", v="COALESCE(s.`views_5m`, 0)") + " AS `conversion_5m`",
            conversion.format(p="l.`purchases_1h`", v="l.`views_1h`") + " AS `conversion_1h`",
            "l.`mean_price_seen_1h`",
        ]
    )
    return [
        _demand_horizon_view("sku_demand_long", "1h", options.long_horizon_s, options, mean_price=True),
        _demand_horizon_view("sku_demand_short", "5m", options.short_horizon_s, options, mean_price=False),
        f"""
CREATE TEMPORARY VIEW `sku_demand` AS
SELECT l.`sku`, l.`window_start`, l.`window_end`, l.`window_time`,
  {columns}
FROM `sku_demand_long` AS l
LEFT JOIN `sku_demand_short` AS s
  ON l.`sku` = s.`sku`
  AND s.`window_time` BETWEEN l.`window_time` AND l.`window_time`""",
    ]


def sku_demand_frame(
    clicks: pd.DataFrame,
    slide_s: int = 60,
    short_s: int = 300,
    long_s: int = 3600,
    *,
    window_ends: Iterable[int] | None = None,
) -> pd.DataFrame:
    """The ``sku_demand`` rows of a click history (see the module docstring).

    Args:
        clicks: ``click_event`` records (``event_id``, ``event_type``, ``user_key``, ``sku``,
            ``event_time`` in epoch ms; other columns are ignored).
        slide_s: Window slide; horizons must be whole multiples of it.
        short_s: The short horizon (the ``*_5m`` columns).
        long_s: The long horizon (the ``*_1h`` columns).
        window_ends: Only these window ends (epoch ms), for every sku with an event in the long
            window before each; default every aligned non-empty window.

    Returns:
        One row per (sku, window end), columns :data:`COLUMNS`, sorted by event time, sku.
    """
    if not 0 < short_s <= long_s or short_s % slide_s or long_s % slide_s:
        raise ValueError("need 0 < short_s <= long_s, both whole multiples of slide_s")
    clicks = dedupe(clicks, "event_id")
    empty = pd.DataFrame({name: pd.Series(dtype="int64") for name in COLUMNS}).astype({"sku": object})
    if clicks.empty:
        return empty
    slide_ms, short_ms, long_ms = slide_s * 1000, short_s * 1000, long_s * 1000
    sku_names, codes, times, q_codes, q_ends = window_queries(clicks, slide_ms, long_ms, window_ends)
    if q_ends.size == 0:
        return empty
    t0 = int(min(times.min(), q_ends.min() - long_ms)) - 1
    span = int(max(times.max(), q_ends.max()) - t0) + 2
    types = clicks["event_type"].to_numpy()
    out: dict[str, object] = {"sku": np.asarray(sku_names)[q_codes]}
    any_event = GroupedTimes(codes, times, t0, span).count(q_codes, q_ends, long_ms)
    for event_type, column in DEMAND_EVENT_TYPES.items():
        mask = types == event_type
        grouped = GroupedTimes(codes[mask], times[mask], t0, span)
        out[f"{column}_5m"] = grouped.count(q_codes, q_ends, short_ms)
        out[f"{column}_1h"] = grouped.count(q_codes, q_ends, long_ms)
    viewers = types == "view"
    user_codes = pd.factorize(clicks["user_key"])[0].astype(np.int64)
    for suffix, horizon in (("5m", short_ms), ("1h", long_ms)):
        out[f"unique_users_{suffix}"] = distinct_count(
            codes[viewers], user_codes[viewers], times[viewers], q_codes, q_ends, horizon
        )
        views = np.asarray(out[f"views_{suffix}"])
        out[f"conversion_{suffix}"] = np.asarray(out[f"purchases_{suffix}"]) / np.maximum(views, 1)
    out["event_time"] = q_ends
    frame = pd.DataFrame(out)[list(COLUMNS)]
    frame = frame[any_event > 0]
    return frame.sort_values(["event_time", "sku"], kind="stable").reset_index(drop=True)
