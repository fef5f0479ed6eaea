"""Random decision inputs shared by the pricing tests (the policy's and the model faults')."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

T0 = 1_735_689_600_000


def random_window_features(
    rng: np.random.Generator,
    base: npt.NDArray[np.float64],
    offer: npt.NDArray[np.bool_],
    views: npt.NDArray[np.int64],
) -> dict[str, Any]:
    """A decision frame's event time, window features and session features, drawn from ``rng``.

    Offers (``offer``) get session features; sku rows get NaN there, as the job hands them over.
    """
    n = len(base)
    return {
        "event_time": T0 + rng.integers(0, 86_400_000, n),
        "views_5m": views,
        "carts_5m": views // 10,
        "purchases_5m": views // 30,
        "conversion_5m": 0.03,
        "views_1h": views * 12,
        "purchases_1h": views // 3,
        "conversion_1h": 0.03,
        "competitor_min_price": base * rng.uniform(0.8, 1.2, n),
        "competitor_offers": rng.integers(0, 5, n),
        "sentiment": rng.uniform(-1, 1, n),
        "mean_rating": rng.uniform(1, 5, n),
        "review_count": rng.integers(0, 500, n),
        "recent_views": np.where(offer, rng.integers(0, 20, n), np.nan),
        "mean_price_seen": np.where(offer, base, np.nan),
    }
