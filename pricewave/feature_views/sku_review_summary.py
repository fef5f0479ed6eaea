"""The ``sku_review_summary`` feature view: its streaming SQL (the job) and its pandas computation (training,
evaluation), side by side. Per sku: review count, mean rating, sentiment and mean embedding.

Both engines compute, after each review of a sku, the summary of every review of the sku so far
(the schema's "statistics of its reviews", stamped with "the newest review folded in"): the count,
the mean rating, the mean ``sentiment`` of the reviews that have one and the mean
``review_embedding`` of the reviews that have one (the mean of unit-length MiniLM embeddings, not
normalized again: the schema's "mean L2-normalized sentence embedding"). Reviews of one sku at the
same millisecond give one summary, after all of them. ``event_time`` = the review.

Offline: :func:`sku_review_frame` (``sentiment`` NaN and ``review_embedding`` None when the input
lacks those columns). The job: :func:`sku_review_summary_view`, an event-time OVER window per sku
over the reviews scored by ``review_sentiment`` (:mod:`udfs.review_embedding`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from pricewave.feature_views.windows import (
    dedupe,
    event_times,
)
from pricewave.schemas import load_schema

COLUMNS: tuple[str, ...] = tuple(load_schema("sku_review_summary").field_names)
"""The view's columns (``schemas/sku_review_summary``): what the pandas side computes."""


PUSHED_COLUMNS = COLUMNS  # the job pushes every column


def sku_review_summary_view() -> str:
    """Per review, the running summary of its sku's reviews (an unbounded event-time OVER window per sku).

    The aggregates run in the JVM, so the window keeps one accumulator per sku, not the reviews:
    Flink's count and means of rating and sentiment, and the mean embedding by ``mean_vector``, a
    Java aggregate (``udfs/java``; Flink has no aggregate over arrays, runs no Python aggregate in an
    unbounded OVER window, and 384 per-dimension averages took seconds to plan). The RANGE window
    gives reviews of one sku at the same millisecond the same summary, after all of them.
    """
    return """
CREATE TEMPORARY VIEW `sku_review_summary` AS
SELECT `sku`,
  COUNT(*) OVER w AS `review_count`,
  AVG(CAST(`rating` AS DOUBLE)) OVER w AS `mean_rating`,
  AVG(`sentiment`) OVER w AS `sentiment`,
  `mean_vector`(`embedding`) OVER w AS `review_embedding`,
  `event_time`
FROM (
  SELECT `sku`, `rating`, `event_time`, `scored`.`sentiment` AS `sentiment`, `scored`.`embedding` AS `embedding`
  FROM (SELECT `sku`, `rating`, `event_time`, `review_sentiment`(`text`) AS `scored` FROM `valid_reviews`)
)
WINDOW w AS (PARTITION BY `sku` ORDER BY `event_time` RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""


def sku_review_versions_view() -> str:
    """Per sku, its review summary as of any event time (a versioned view).

    A deduplication that keeps each sku's latest summary on event time, read by Flink as a
    versioned table keyed by sku: a temporal join finds the summary of the reviews up to a given
    event time, the same in every run (the store's latest summary would depend on timing).
    """
    return """
CREATE TEMPORARY VIEW `sku_review_versions` AS
SELECT `sku`, `review_count`, `mean_rating`, `sentiment`, `review_embedding`, `event_time`
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY `sku` ORDER BY `event_time` DESC) AS `recency`
  FROM `sku_review_summary`
) WHERE `recency` = 1"""


def sku_review_frame(reviews: pd.DataFrame) -> pd.DataFrame:
    """The ``sku_review_summary`` rows of a review history: the running summary after each review (module docstring).

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
