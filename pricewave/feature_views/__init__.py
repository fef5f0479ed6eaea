"""One contract per feature view: its columns (from ``schemas/<view>``), its streaming SQL and its
pandas computation, side by side in one module, so the two definitions can be read (and changed)
together.

* :mod:`~pricewave.feature_views.sku_demand`: per sku and window, demand at two horizons;
* :mod:`~pricewave.feature_views.sku_competition`: per sku and window, the competitors' prices;
* :mod:`~pricewave.feature_views.sku_review_summary`: per sku, the running review summary;
* :mod:`~pricewave.feature_views.user_session`: per view or add-to-cart, the user's session so far;
* :mod:`~pricewave.feature_views.shopper_profile`: per click, the user's revealed price response over days.

The streaming job (:mod:`pricewave.job.features`) declares the SQL; training and the closed-loop
evaluation compute the same features offline with the ``*_frame`` functions, so a model sees offline
what the pipeline computes online (``tests/pricewave/feature_views/test_parity.py`` runs both on one
simulated history and compares every column; each drops duplicate events first, as the job does;
``window_ends`` restricts the windowed frames to those ends, the evaluation asks only for "now").
``event_time`` is epoch ms throughout. :mod:`~pricewave.feature_views.windows` holds the pandas side's
event-time window helpers.

Example:
    >>> import pandas as pd
    >>> from pricewave.feature_views import sku_demand_frame
    >>> clicks = pd.DataFrame({"event_id": ["a", "b", "b", "c"], "event_type": ["view", "view", "view", "purchase"],
    ...     "user_key": ["u1", "u2", "u2", "u1"], "session_id": "s", "sku": "A", "price_seen": 10.0,
    ...     "event_time": [0, 30_000, 30_000, 90_000]})
    >>> demand = sku_demand_frame(clicks, window_ends=[120_000])
    >>> demand[["sku", "views_5m", "purchases_5m", "unique_users_5m", "conversion_5m", "event_time"]].to_dict("records")
    [{'sku': 'A', 'views_5m': 2, 'purchases_5m': 1, 'unique_users_5m': 2, 'conversion_5m': 0.5, 'event_time': 120000}]
"""

from pricewave.feature_views.shopper_profile import shopper_profile_frame
from pricewave.feature_views.sku_competition import sku_competition_frame
from pricewave.feature_views.sku_demand import sku_demand_frame
from pricewave.feature_views.sku_review_summary import sku_review_frame
from pricewave.feature_views.user_session import user_session_frame

__all__ = [
    "shopper_profile_frame",
    "sku_competition_frame",
    "sku_demand_frame",
    "sku_review_frame",
    "user_session_frame",
]
