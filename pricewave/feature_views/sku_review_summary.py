"""The ``sku_review_summary`` feature view: its streaming SQL (the job) and its pandas computation (training,
evaluation), side by side. Per sku: review count, mean rating, sentiment and mean embedding.

Offline: :func:`sku_review_frame` (``sku_review_summary``): per review, the sku's running count, mean
  rating, mean ``sentiment`` (when the frame has that column) and mean ``review_embedding`` (when
  it has that column; else None). ``event_time`` = the review.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from pricewave.feature_views.windows import (
    WindowOptions,
    dedupe,
    event_times,
)
from pricewave.schemas import load_schema
from pricewave.sql import interval

COLUMNS: tuple[str, ...] = tuple(load_schema("sku_review_summary").field_names)
"""The view's columns (``schemas/sku_review_summary``): what the pandas side computes."""


PUSHED_COLUMNS = COLUMNS  # the job pushes every column


def sku_review_summary_view(options: WindowOptions) -> str:
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


def sku_review_frame(reviews: pd.DataFrame) -> pd.DataFrame:
    """The ``sku_review_summary`` rows of a review history: the running summary after each review.

    Args:
        reviews: ``review`` records (``review_id``, ``sku``, ``rating``, ``event_time``), optionally
            with ``sentiment`` in [−1, 1] and ``review_embedding`` (384 floats) per review.

    Returns:
        Columns :data:`COLUMNS`; ``sentiment`` is NaN and ``review_embedding`` None
        when the input lacks them. Reviews of one sku at the same millisecond share one row.
    """
    reviews = dedupe(reviews, "review_id")
    if reviews.empty:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in COLUMNS}).astype(
            {"sku": object, "review_count": "int64", "review_embedding": object, "event_time": "int64"}
        )
    frame = reviews.assign(event_time=event_times(reviews)).sort_values(["sku", "event_time"], kind="stable")
    grouped = frame.groupby("sku", sort=False)
    count = grouped.cumcount().to_numpy() + 1
    rating = pd.to_numeric(frame["rating"]).astype(np.float64)
    out = pd.DataFrame(
        {
            "sku": frame["sku"].to_numpy(),
            "review_count": count.astype(np.int64),
            "mean_rating": rating.groupby(frame["sku"], sort=False).cumsum().to_numpy() / count,
            "event_time": frame["event_time"].to_numpy(),
        }
    )
    if "sentiment" in frame.columns:
        sentiment = pd.to_numeric(frame["sentiment"]).astype(np.float64)
        known = sentiment.notna().astype(np.float64)
        total = sentiment.fillna(0.0).groupby(frame["sku"], sort=False).cumsum().to_numpy()
        seen = known.groupby(frame["sku"], sort=False).cumsum().to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            out["sentiment"] = np.where(seen > 0, total / np.maximum(seen, 1), np.nan)
    else:
        out["sentiment"] = np.nan
    embeddings: list[object] = [None] * len(frame)
    if "review_embedding" in frame.columns:
        running: dict[str, tuple[npt.NDArray[np.float64], int]] = {}
        for i, (sku, vector) in enumerate(zip(frame["sku"], frame["review_embedding"], strict=True)):
            total_vector, n = running.get(sku, (np.zeros(0), 0))
            if vector is not None and len(vector):
                array = np.asarray(vector, dtype=np.float64)
                total_vector, n = (array if n == 0 else total_vector + array), n + 1
                running[sku] = (total_vector, n)
            embeddings[i] = (total_vector / n).astype(np.float32).tolist() if n else None
    out["review_embedding"] = embeddings
    out = out[list(COLUMNS)]
    # Two reviews of one sku at the same millisecond: the row after both is the one that holds.
    out = out.drop_duplicates(subset=["sku", "event_time"], keep="last")
    return out.sort_values(["event_time", "sku"], kind="stable").reset_index(drop=True)
