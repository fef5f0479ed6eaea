"""Stage 3: the feature views, in event time (Flink SQL windows over the typed inputs).

In data-flow order: ``unique_clicks`` (replayed duplicates removed), ``sku_demand`` (two sliced HOP
horizons), ``sku_competition``, ``sku_features`` (demand with the competition of its window),
``sku_review_summary`` and its versioned view ``sku_review_versions``, and ``user_sessions`` (each
click with the user's session so far).
"""

from __future__ import annotations

from pyflink.table import TableEnvironment

from pricewave.job.options import JobOptions
from pricewave.job.sql import interval, quote


def deduplicated_clicks(options: JobOptions) -> str:
    """Clicks with replayed duplicates (same event_id) removed, keeping event time.

    Window deduplication: a duplicate carries the same event_time as its original, so both fall in
    the same tumbling window and only the first survives; state is freed when the window closes.
    The window is one millisecond (``dedup_window_s``): each click leaves when the watermark reaches
    its own event time, ahead of that watermark, so no event-time operator downstream (the per-user
    session OVER window above all) can see it behind its watermark, at any parallelism.
    """
    return f"""
CREATE TEMPORARY VIEW `unique_clicks` AS
SELECT `event_id`, `event_type`, `user_key`, `session_id`, `sku`, `price_seen`, `quantity`, `channel`,
  `event_time`
FROM (
  SELECT *, ROW_NUMBER() OVER (
    PARTITION BY `window_start`, `window_end`, `event_id` ORDER BY `event_time`) AS `occurrence`
  FROM TABLE(TUMBLE(TABLE `valid_clicks`, DESCRIPTOR(`event_time`), {interval(options.dedup_window_s)}))
) WHERE `occurrence` = 1"""


DEMAND_EVENT_TYPES = {"view": "views", "click": "clicks", "add_to_cart": "carts", "purchase": "purchases"}


def _demand_horizon_view(name: str, suffix: str, size_s: int, options: JobOptions, *, mean_price: bool) -> str:
    """Per-sku counts over one horizon: a HOP window whose aggregates never mention the window.

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
  COUNT(DISTINCT `user_key`) AS `unique_users_{suffix}`{price}
FROM TABLE(HOP(TABLE `unique_clicks`, DESCRIPTOR(`event_time`),
  {interval(options.window_slide_s)}, {interval(size_s)}))
GROUP BY `sku`, `window_start`, `window_end`, `window_time`"""


def sku_demand_views(options: JobOptions) -> list[str]:
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


def sku_competition_view(options: JobOptions) -> str:
    """Per-sku competition over the short horizon: latest price per competitor, then min/median.

    A window Top-1 keeps the latest quote of each (sku, competitor) in the window; a window
    aggregation then takes, across the competitors in stock, the cheapest, the median and how
    many are live.
    """
    return f"""
CREATE TEMPORARY VIEW `sku_competition` AS
SELECT `sku`, `window_start`, `window_end`, `window_time`,
  MIN(`latest_price`) AS `competitor_min_price`,
  PERCENTILE(`latest_price`, 0.5) AS `competitor_median_price`,
  COUNT(*) AS `competitor_offers`,
  TIMESTAMPDIFF(SECOND, MAX(`latest_time`), `window_time`) AS `competitor_staleness_s`
FROM (
  SELECT `sku`, `window_start`, `window_end`, `window_time`, `price` AS `latest_price`, `in_stock`,
    `event_time` AS `latest_time`,
    ROW_NUMBER() OVER (
      PARTITION BY `window_start`, `window_end`, `sku`, `competitor` ORDER BY `event_time` DESC) AS `recency`
  FROM TABLE(HOP(TABLE `valid_competitor_prices`, DESCRIPTOR(`event_time`),
    {interval(options.window_slide_s)}, {interval(options.short_horizon_s)}))
) WHERE `recency` = 1 AND `in_stock`
GROUP BY `sku`, `window_start`, `window_end`, `window_time`"""


def sku_features_view() -> str:
    """Demand joined with the competition of the same window (an interval join on window time)."""
    return """
CREATE TEMPORARY VIEW `sku_features` AS
SELECT d.*, c.`competitor_min_price`, c.`competitor_median_price`, c.`competitor_offers`,
  c.`competitor_staleness_s`
FROM `sku_demand` AS d
LEFT JOIN `sku_competition` AS c
  ON d.`sku` = c.`sku`
  AND c.`window_time` BETWEEN d.`window_time` AND d.`window_time`"""


def sku_review_summary_view(options: JobOptions) -> str:
    """Per-sku review summary over the long horizon: count, mean rating, sentiment, mean embedding."""
    return f"""
CREATE TEMPORARY VIEW `sku_review_summary` AS
SELECT `sku`, `s`.`review_count`, `s`.`mean_rating`, `s`.`sentiment`, `s`.`review_embedding`, `window_time`
FROM (
  SELECT `sku`,
    `review_summary`(`rating`, `scored`.`sentiment`, `scored`.`embedding`) AS `s`,
    TUMBLE_ROWTIME(`event_time`, {interval(options.long_horizon_s)}) AS `window_time`
  FROM (SELECT `sku`, `rating`, `event_time`, `review_sentiment`(`text`) AS `scored` FROM `valid_reviews`)
  GROUP BY `sku`, TUMBLE(`event_time`, {interval(options.long_horizon_s)})
)"""


def sku_review_versions_view() -> str:
    """Per sku, its hourly review summary as of any event time (a versioned view).

    A deduplication that keeps each sku's latest summary window on event time, read by Flink as a
    versioned table keyed by sku: a temporal join finds the summary that was complete at a given
    event time, the same in every run (the store's latest summary would depend on timing).
    """
    return """
CREATE TEMPORARY VIEW `sku_review_versions` AS
SELECT `sku`, `review_count`, `mean_rating`, `sentiment`, `review_embedding`, `window_time`
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY `sku` ORDER BY `window_time` DESC) AS `recency`
  FROM `sku_review_summary`
) WHERE `recency` = 1"""


def user_session_view(options: JobOptions) -> str:
    """Per click, the user's session so far (OVER window on event time, per pseudonymous user)."""
    session = interval(options.session_gap_s)
    return f"""
CREATE TEMPORARY VIEW `user_sessions` AS
SELECT `user_key`, `sku`, `event_type`, `event_time`,
  SUM(CASE WHEN `event_type` = 'view' THEN 1 ELSE 0 END) OVER w AS `recent_views`,
  SUM(CASE WHEN `event_type` = 'add_to_cart' THEN 1 ELSE 0 END) OVER w AS `recent_carts`,
  AVG(`price_seen`) OVER w AS `mean_price_seen`,
  CAST(TIMESTAMPDIFF(SECOND, MIN(`event_time`) OVER w, `event_time`) AS DOUBLE) AS `dwell_s`,
  COUNT(*) OVER w AS `session_events`
FROM `unique_clicks`
WINDOW w AS (PARTITION BY `user_key` ORDER BY `event_time` RANGE BETWEEN {session} PRECEDING AND CURRENT ROW)"""


def declare_features(t_env: TableEnvironment, options: JobOptions) -> None:
    """Stage 3: every feature view, each after the views it reads."""
    for statement in (
        deduplicated_clicks(options),
        *sku_demand_views(options),
        sku_competition_view(options),
        sku_features_view(),
        sku_review_summary_view(options),
        sku_review_versions_view(),
        user_session_view(options),
    ):
        t_env.execute_sql(statement)
