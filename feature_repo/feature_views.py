"""Feast feature views, one per concept, each fed by its push source.

TTLs say how long a value stays usable. Feast does not apply them to online reads, so
``pricewave.feature_store.reader`` checks freshness itself from the same ``ttl``.
"""

from datetime import timedelta

from entities import sku, user
from feast import FeatureView
from sources import (
    TABLES,
    shopper_profile_push,
    sku_catalog_push,
    sku_competition_push,
    sku_demand_push,
    sku_price_push,
    sku_review_summary_push,
    user_offer_push,
    user_session_push,
)

sku_demand = FeatureView(
    name="sku_demand",
    entities=[sku],
    ttl=timedelta(hours=2),  # the 1 h window is still meaningful a little after its last update
    schema=TABLES["sku_demand"].features(),
    source=sku_demand_push,
    online=True,
    description="Demand windows per sku at 5 minute and 1 hour horizons.",
)

sku_competition = FeatureView(
    name="sku_competition",
    entities=[sku],
    ttl=timedelta(hours=24),  # competitor prices are scraped a few times a day
    schema=TABLES["sku_competition"].features(),
    source=sku_competition_push,
    online=True,
    description="Competitor price summary per sku.",
)

sku_review_summary = FeatureView(
    name="sku_review_summary",
    entities=[sku],
    ttl=timedelta(days=90),  # reviews accumulate slowly; the summary stays valid until superseded
    schema=TABLES["sku_review_summary"].features(),
    source=sku_review_summary_push,
    online=True,
    description="Review count, rating, sentiment and mean review embedding per sku.",
)

user_session = FeatureView(
    name="user_session",
    entities=[user],
    ttl=timedelta(minutes=30),  # a session ends after 30 minutes of inactivity
    schema=TABLES["user_session"].features(),
    source=user_session_push,
    online=True,
    description="Recent behaviour per pseudonymous user in the current session (training reads it "
    "offline; the job prices offers from the session in-stream and does not push it online).",
)

shopper_profile = FeatureView(
    name="shopper_profile",
    entities=[user],
    ttl=timedelta(days=7),  # the profile horizon: the job's keyed state keeps a shopper's clicks this long
    schema=TABLES["shopper_profile"].features(),
    source=shopper_profile_push,
    online=True,
    description="A pseudonymous shopper's revealed price response over days (views, carts, purchases, "
    "paid vs shown prices); the job pushes it at each purchase and prices offers from it in-stream. "
    "`pricewave profile delete` removes one on request.",
)

sku_catalog = FeatureView(
    name="sku_catalog",
    entities=[sku],
    ttl=timedelta(days=30),  # catalog records are refreshed at least monthly
    schema=TABLES["sku_catalog"].features(),
    source=sku_catalog_push,
    online=True,
    description="Catalog facts per sku: base (list) price, cost, MAP, ceiling, category.",
)

sku_price = FeatureView(
    name="sku_price",
    entities=[sku],
    ttl=timedelta(hours=1),  # without a decision for an hour the kill switch falls back to the base price
    schema=TABLES["sku_price"].features(),
    source=sku_price_push,
    online=True,
    description="The latest dynamic price per sku, for everyone (price decisions of kind 'sku').",
)

user_offer = FeatureView(
    name="user_offer",
    entities=[user, sku],
    ttl=timedelta(minutes=15),  # offers are made for an active session and expire quickly
    schema=TABLES["user_offer"].features(),
    source=user_offer_push,
    online=True,
    description="The latest personalized offer per (user, sku) (price decisions of kind 'offer').",
)
