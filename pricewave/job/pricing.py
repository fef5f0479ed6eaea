"""Stage 4: pricing, by the vectorized pricers of :mod:`udfs.pricing` (pandas UDFs).

In data-flow order: ``sku_pricing_inputs`` (each sku's windows in event-time order with the review
summary as of the window), ``sku_decisions`` (a price per sku and window), ``sku_price_versions``
(each sku's price as of any event time), ``offer_decisions`` (a personalized offer per view or
add-to-cart, joined with its sku's version as of the click) and ``all_decisions``, what the sinks write.
"""

from __future__ import annotations

from pyflink.table import TableEnvironment

from pricewave.feature_views.user_session import session_event_filter
from pricewave.sql import quote
from udfs.pricing import (
    DECISION_FIELDS,
    SKU_COMPETITION_FEATURES,
    SKU_DEMAND_FEATURES,
    SKU_REVIEW_FEATURES,
    SKU_WINDOW_FEATURES,
    OfferPricer,
    SkuPricer,
)


def sku_pricing_inputs_view() -> str:
    """What the sku pricer sees: window features and the review summary as of the window, in order.

    First an event-time OVER window per sku hands each sku's windows on in event-time order once
    the watermark passes them (its aggregate, ``ordered_rows``, is not used: the order is the
    point). The order matters twice downstream: the pricer's rate limit compares each window with
    the sku's previous one (:class:`udfs.pricing.SkuPricer`), and the deduplication behind
    :func:`sku_price_versions_view` drops a window that arrives after a later one. The feature
    joins upstream can emit them that way round: a window that found its competition row leaves
    the interval join at once, one that did not waits for the watermark.

    Then the review summary comes through an event-time temporal join on
    :func:`sku_review_versions_view`: a window waits until the reviews' watermark passes it, and
    the join emits waiting rows in their arrival order, so the order holds.
    """
    reviews = ", ".join(f"r.{quote(name)}" for name in SKU_REVIEW_FEATURES)
    window_columns = ("sku", "window_time", *SKU_DEMAND_FEATURES, *SKU_COMPETITION_FEATURES)
    window = ", ".join(f"f.{quote(name)}" for name in window_columns)
    return f"""
CREATE TEMPORARY VIEW `sku_pricing_inputs` AS
SELECT {window}, {reviews}
FROM (
  SELECT *,
    COUNT(*) OVER (PARTITION BY `sku` ORDER BY `window_time` ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
      AS `ordered_rows`
  FROM `sku_features`
) AS f
LEFT JOIN `sku_review_versions` FOR SYSTEM_TIME AS OF f.`window_time` AS r
  ON f.`sku` = r.`sku`"""


def sku_decisions_query() -> str:
    """One dynamic price per sku and window, priced by the vectorized sku pricer.

    Besides the decision columns, each row keeps its window time (an event-time attribute) and
    what the pricer saw of the window, for :func:`sku_price_versions_view`. The job registers it
    as a Table, not a SQL view (:func:`build_pipeline`): every consumer then shares one node and
    the planner calls ``price_sku`` once per window; from a SQL view it planned the call twice
    (once for the sinks, once for the versioned view), pricing every window twice.
    """
    arguments = ", ".join(quote(name) for name in SkuPricer.COLUMNS)
    fields = ", ".join(f"`d`.{quote(name)} AS {quote(name)}" for name, _ in DECISION_FIELDS)
    features = ", ".join(quote(name) for name in SKU_WINDOW_FEATURES)
    return f"""
SELECT {fields}, `window_time`, {features}
FROM (SELECT `price_sku`({arguments}) AS `d`, `window_time`, {features} FROM `sku_pricing_inputs`)"""


def sku_price_versions_view() -> str:
    """Per sku, its published price and what it was priced on, as of any event time (a versioned view).

    A deduplication that keeps each sku's latest window on event time: Flink reads it as a
    versioned table keyed by sku, so an event-time temporal join finds the version that was
    current at a click's event time, the same in every run, whatever the timing. The windows
    arrive in event-time order per sku (:func:`sku_pricing_inputs_view`), so none is dropped.
    """
    features = ", ".join(quote(name) for name in SKU_WINDOW_FEATURES)
    return f"""
CREATE TEMPORARY VIEW `sku_price_versions` AS
SELECT `sku`, `window_time`, `price` AS `sku_price`, {features}
FROM (
  SELECT `sku`, `window_time`, `price`, {features},
    ROW_NUMBER() OVER (PARTITION BY `sku` ORDER BY `window_time` DESC) AS `recency`
  FROM `sku_decisions` WHERE `decision_json` IS NOT NULL
) WHERE `recency` = 1"""


def offer_decisions_view() -> str:
    """A personalized offer for each view or add-to-cart, priced by the vectorized offer pricer.

    Each click meets its sku's price, window features and review summary as of the click's event
    time (an event-time temporal join on :func:`sku_price_versions_view`): the offer waits until
    the sku side's watermark passes the click, and is then a function of the input alone, so a replay after
    a failure prices it exactly as before. A sku not priced yet gets no version (NULLs): the pricer
    then caps at the base price and, without demand features, the kill switch prices it.
    """
    fields = ", ".join(f"`d`.{quote(name)} AS {quote(name)}" for name, _ in DECISION_FIELDS)
    versioned = {"sku_price", *SKU_WINDOW_FEATURES}
    arguments = ", ".join(f"{'v' if name in versioned else 'u'}.{quote(name)}" for name in OfferPricer.COLUMNS)
    return f"""
CREATE TEMPORARY VIEW `offer_decisions` AS
SELECT {fields}
FROM (
  SELECT `price_offer`({arguments}) AS `d`
  FROM (SELECT * FROM `user_sessions` WHERE {session_event_filter()}) AS u
  LEFT JOIN `sku_price_versions` FOR SYSTEM_TIME AS OF u.`event_time` AS v
    ON u.`sku` = v.`sku`
)"""


def all_decisions_view() -> str:
    """The sku prices and the personalized offers as one stream, the decision columns only."""
    decision_columns = ", ".join(quote(name) for name, _ in DECISION_FIELDS)
    return (
        "CREATE TEMPORARY VIEW `all_decisions` AS "
        f"SELECT {decision_columns} FROM `sku_decisions` UNION ALL SELECT * FROM `offer_decisions`"
    )


def declare_pricing(t_env: TableEnvironment) -> None:
    """Stage 4: the pricing views, each after the views it reads."""
    t_env.execute_sql(sku_pricing_inputs_view())
    t_env.create_temporary_view("sku_decisions", t_env.sql_query(sku_decisions_query()))
    for statement in (sku_price_versions_view(), offer_decisions_view(), all_decisions_view()):
        t_env.execute_sql(statement)
