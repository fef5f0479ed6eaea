"""Stage 3: the feature views, in event time (Flink SQL windows over the typed inputs).

In data-flow order: ``unique_clicks`` (replayed duplicates removed), ``sku_demand`` (two sliced HOP
horizons), ``sku_competition``, ``sku_features`` (demand with the competition of its window),
``sku_review_summary`` and its versioned view ``sku_review_versions``, ``shopper_profiles`` (each click
with the user's profile over days) and ``user_sessions`` (each view or add-to-cart with the user's
session so far and the profile as of just before it). Each feature view's SQL lives beside its pandas computation,
in :mod:`pricewave.feature_views`; this module adds what only the job needs (deduplication, the join).
"""

from __future__ import annotations

from pyflink.table import TableEnvironment

from pricewave.feature_views import shopper_profile, sku_competition, sku_demand, sku_review_summary, user_session
from pricewave.job.options import JobOptions
from pricewave.sql import interval


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


def declare_features(t_env: TableEnvironment, options: JobOptions) -> None:
    """Stage 3: every feature view, each after the views it reads."""
    for statement in (
        deduplicated_clicks(options),
        *sku_demand.sku_demand_views(options),
        sku_competition.sku_competition_view(options),
        sku_features_view(),
        sku_review_summary.sku_review_summary_view(),
        sku_review_summary.sku_review_versions_view(),
        shopper_profile.shopper_profile_view(options.shopper_horizon_s),
        user_session.user_session_view(
            options, source="shopper_profiles", carried=shopper_profile.before_event_columns()
        ),
    ):
        t_env.execute_sql(statement)
