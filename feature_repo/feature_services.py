"""Feast feature services: what each sales channel may read.

A channel reads the personalized offer when fresh, else the sku price, else the base price
(``pricewave.feature_store.reader.get_price``). A service that leaves out ``user_offer``
never shows a personalized price.
"""

from feast import FeatureService
from feature_views import (
    sku_catalog,
    sku_competition,
    sku_demand,
    sku_price,
    sku_review_summary,
    user_offer,
)

checkout_pricing = FeatureService(
    name="checkout_pricing",
    features=[user_offer, sku_price, sku_catalog[["base_price"]]],
    description="Checkout: the price the shopper pays (offer, else sku price, else base price).",
)

app_pricing = FeatureService(
    name="app_pricing",
    features=[
        user_offer,
        sku_price,
        sku_catalog[["base_price", "category"]],
        sku_review_summary[["review_count", "mean_rating"]],
    ],
    description="Mobile app product page: price with disclosure flag plus rating badges.",
)

ads_bidding = FeatureService(
    name="ads_bidding",
    features=[
        sku_price,
        sku_catalog[["base_price", "cost"]],
        sku_demand,
        sku_competition,
    ],
    description="Ad bidding: non-personalized price, margin basis, demand and competition (no offers).",
)
