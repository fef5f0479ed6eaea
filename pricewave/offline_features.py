"""The pandas reference implementation of the streaming job's features, from event history frames.

Training (point-in-time joins through Feast) and the closed-loop evaluation compute features with
these functions, so a model sees offline what the pipeline computes online. Every frame's columns
are the fields of its feature view (``schemas/<view>/v1.json``); ``event_time`` is epoch ms.

* :func:`sku_demand_frame` (``sku_demand``): per sku and window end, HOP windows sliding every
  ``slide_s`` seconds, aligned to the epoch like Flink's: views/clicks/carts/purchases and distinct
  viewers over ``[end − short_s, end)`` (``*_5m``) and ``[end − long_s, end)`` (``*_1h``),
  conversion = purchases / max(views, 1). A row exists for each window end whose long window holds
  at least one click event of the sku (as a window operator only emits non-empty windows).
  ``event_time`` = the window end.
* :func:`sku_competition_frame` (``sku_competition``): per sku and window end (HOP over
  ``short_s``): the latest observation of each competitor in the window, kept when in stock, then
  min / median / count and staleness = seconds since the OLDEST of those latest observations
  (the schema's definition). ``competitor_gap`` = (our latest price − min) / min, our price being
  the latest ``price_seen`` before the window end (NaN when unknown). ``event_time`` = the window
  end: every observation folded in is older, so a point-in-time join never sees the future.
* :func:`user_session_frame` (``user_session``): per view event, the user's views and carts over
  the last ``horizon_s`` (30 min) up to and including that view, mean price seen over those views,
  dwell (first to latest event in the horizon) and recency (seconds since the user's previous
  event). ``event_time`` = the view.
* :func:`sku_review_frame` (``sku_review_summary``): per review, the sku's running count, mean
  rating, mean ``sentiment`` (when the frame has that column) and mean ``review_embedding`` (when
  it has that column; else None). ``event_time`` = the review.

Each function first drops duplicate events (same ``event_id`` / ``review_id``), as the job does.
``window_ends`` (epoch ms) restricts the windowed frames to those ends — the evaluation asks only
for "now".

Example:
    >>> import pandas as pd

from pricewave.schemas import load_schema
    >>> clicks = pd.DataFrame({"event_id": ["a", "b", "b", "c"], "event_type": ["view", "view", "view", "purchase"],
    ...     "user_key": ["u1", "u2", "u2", "u1"], "session_id": "s", "sku": "A", "price_seen": 10.0,
    ...     "event_time": [0, 30_000, 30_000, 90_000]})
    >>> demand = sku_demand_frame(clicks, window_ends=[120_000])
    >>> demand[["sku", "views_5m", "purchases_5m", "unique_users_5m", "conversion_5m", "event_time"]].to_dict("records")
    [{'sku': 'A', 'views_5m': 2, 'purchases_5m': 1, 'unique_users_5m': 2, 'conversion_5m': 0.5, 'event_time': 120000}]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pandas as pd

from pricewave.schemas import load_schema

DEMAND_COLUMNS: tuple[str, ...] = tuple(load_schema("sku_demand").field_names)
COMPETITION_COLUMNS: tuple[str, ...] = (
    "sku",
    "competitor_min_price",
    "competitor_median_price",
    "competitor_offers",
    "competitor_staleness_s",
    "competitor_gap",
    "event_time",
)
SESSION_COLUMNS: tuple[str, ...] = (
    "user_key",
    "recent_views",
    "recent_carts",
    "mean_price_seen",
    "dwell_s",
    "recency_s",
    "event_time",
)
REVIEW_COLUMNS: tuple[str, ...] = ("sku", "review_count", "mean_rating", "sentiment", "review_embedding", "event_time")

# The click event types each demand count tallies (the job's `event_type` values).
_DEMAND_TYPES = {"views": "view", "clicks": "click", "carts": "add_to_cart", "purchases": "purchase"}
IntArray = npt.NDArray[np.int64]


def _dedupe(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    if id_column not in frame.columns:
        return frame
    return frame.drop_duplicates(subset=[id_column], keep="first")


def _times(frame: pd.DataFrame) -> IntArray:
    return np.asarray(pd.to_numeric(frame["event_time"]).to_numpy(), dtype=np.int64)


class _GroupedTimes:
    """Event times sorted within groups, for counts over half-open windows ``[end − h, end)``.

    Groups are laid out on one axis: ``key = code × span + (t − t0)``, so one ``searchsorted``
    answers every (group, window end) query at once.
    """

    def __init__(self, codes: IntArray, times: IntArray, t0: int, span: int) -> None:
        self.t0, self.span = t0, span
        self.keys = np.sort(codes * span + (times - t0))

    def count(self, codes: IntArray, ends: IntArray, horizon_ms: int) -> IntArray:
        base = codes * self.span - self.t0
        upper = np.searchsorted(self.keys, base + ends, side="left")
        lower = np.searchsorted(self.keys, base + ends - horizon_ms, side="left")
        return np.asarray(upper - lower, dtype=np.int64)


def _aligned_ends(codes: IntArray, times: IntArray, slide_ms: int, horizon_ms: int) -> tuple[IntArray, IntArray]:
    """Every (group, window end) whose window ``[end − horizon, end)`` holds an event of the group.

    Window ends are multiples of ``slide_ms``; an event in slide bucket b is in the windows
    ending at (b + 1) … (b + horizon / slide) slides.
    """
    n = horizon_ms // slide_ms
    pairs = np.unique(np.stack([codes, times // slide_ms]), axis=1)
    if pairs.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    group, bucket = pairs[0], pairs[1]
    # Merge each group's coverage ranges [b + 1, b + n] into runs, then enumerate the runs.
    new_run = np.ones(group.size, dtype=bool)
    new_run[1:] = (group[1:] != group[:-1]) | (bucket[1:] > bucket[:-1] + n)
    run_id = np.cumsum(new_run) - 1
    run_group = group[new_run]
    run_start = bucket[new_run] + 1
    run_stop = np.zeros(run_start.size, dtype=np.int64)
    np.maximum.at(run_stop, run_id, bucket + n)
    lengths = run_stop - run_start + 1
    out_group = np.repeat(run_group, lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out_end = (np.repeat(run_start, lengths) + offsets) * slide_ms
    return out_group.astype(np.int64), out_end.astype(np.int64)


def _requested_ends(codes_present: IntArray, window_ends: Iterable[int]) -> tuple[IntArray, IntArray]:
    ends = np.asarray(sorted({int(e) for e in window_ends}), dtype=np.int64)
    groups = np.unique(codes_present)
    return np.repeat(groups, ends.size), np.tile(ends, groups.size)


def _distinct_count(
    codes: IntArray, users: IntArray, times: IntArray, q_codes: IntArray, q_ends: IntArray, horizon_ms: int
) -> IntArray:
    """Distinct users per (group, end) with an event in ``[end − horizon, end)``.

    Each event at t covers the ends in (t, t + h]; cut at the same user's next event, the pieces
    of one user are disjoint and their union is the user's coverage, so the count at e is
    #(piece starts < e) − #(piece stops < e).
    """
    if codes.size == 0:
        return np.zeros(q_codes.size, dtype=np.int64)
    order = np.lexsort((times, users, codes))
    c, u, t = codes[order], users[order], times[order]
    same_next = np.zeros(c.size, dtype=bool)
    same_next[:-1] = (c[1:] == c[:-1]) & (u[1:] == u[:-1])
    next_t = np.empty_like(t)
    next_t[:-1] = t[1:]
    stop = np.where(same_next, np.minimum(t + horizon_ms, next_t), t + horizon_ms)
    t0 = int(min(t.min(), q_ends.min() - horizon_ms)) - 1
    span = int(max(stop.max(), q_ends.max()) - t0) + 2
    starts = _GroupedTimes(c, t, t0, span)
    stops = _GroupedTimes(c, stop, t0, span)
    group_start = q_codes * span
    query = group_start + (q_ends - t0)
    started = np.searchsorted(starts.keys, query, side="left") - np.searchsorted(starts.keys, group_start, side="left")
    stopped = np.searchsorted(stops.keys, query, side="left") - np.searchsorted(stops.keys, group_start, side="left")
    return np.asarray(started - stopped, dtype=np.int64)


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
        One row per (sku, window end), columns :data:`DEMAND_COLUMNS`, sorted by event time, sku.
    """
    if not 0 < short_s <= long_s or short_s % slide_s or long_s % slide_s:
        raise ValueError("need 0 < short_s <= long_s, both whole multiples of slide_s")
    clicks = _dedupe(clicks, "event_id")
    empty = pd.DataFrame({name: pd.Series(dtype="int64") for name in DEMAND_COLUMNS}).astype({"sku": object})
    if clicks.empty:
        return empty
    sku_codes, sku_names = pd.factorize(clicks["sku"], sort=True)
    codes = sku_codes.astype(np.int64)
    times = _times(clicks)
    slide_ms, short_ms, long_ms = slide_s * 1000, short_s * 1000, long_s * 1000
    if window_ends is None:
        q_codes, q_ends = _aligned_ends(codes, times, slide_ms, long_ms)
    else:
        q_codes, q_ends = _requested_ends(codes, window_ends)
        if q_ends.size == 0:
            return empty
    t0 = int(min(times.min(), q_ends.min() - long_ms)) - 1
    span = int(max(times.max(), q_ends.max()) - t0) + 2
    types = clicks["event_type"].to_numpy()
    out: dict[str, object] = {"sku": np.asarray(sku_names)[q_codes]}
    any_event = _GroupedTimes(codes, times, t0, span).count(q_codes, q_ends, long_ms)
    for column, event_type in _DEMAND_TYPES.items():
        mask = types == event_type
        grouped = _GroupedTimes(codes[mask], times[mask], t0, span)
        out[f"{column}_5m"] = grouped.count(q_codes, q_ends, short_ms)
        out[f"{column}_1h"] = grouped.count(q_codes, q_ends, long_ms)
    viewers = types == "view"
    user_codes = pd.factorize(clicks["user_key"])[0].astype(np.int64)
    for suffix, horizon in (("5m", short_ms), ("1h", long_ms)):
        out[f"unique_users_{suffix}"] = _distinct_count(
            codes[viewers], user_codes[viewers], times[viewers], q_codes, q_ends, horizon
        )
        views = np.asarray(out[f"views_{suffix}"])
        out[f"conversion_{suffix}"] = np.asarray(out[f"purchases_{suffix}"]) / np.maximum(views, 1)
    out["event_time"] = q_ends
    frame = pd.DataFrame(out)[list(DEMAND_COLUMNS)]
    frame = frame[any_event > 0]
    return frame.sort_values(["event_time", "sku"], kind="stable").reset_index(drop=True)


def _latest_before(
    codes: IntArray, times: IntArray, q_codes: IntArray, q_ends: IntArray, t0: int, span: int
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Index (into the group-sorted order) of each query's latest event strictly before its end."""
    keys = codes * span + (times - t0)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    position = np.searchsorted(sorted_keys, q_codes * span + (q_ends - t0), side="left") - 1
    valid = position >= 0
    safe = np.where(valid, position, 0)
    valid &= sorted_keys[safe] >= q_codes * span  # the hit belongs to the same group
    return order[safe], valid


def sku_competition_frame(
    prices: pd.DataFrame,
    slide_s: int = 60,
    short_s: int = 300,
    *,
    our_prices: pd.DataFrame | None = None,
    window_ends: Iterable[int] | None = None,
) -> pd.DataFrame:
    """The ``sku_competition`` rows of a competitor-price history (see the module docstring).

    Args:
        prices: ``competitor_price`` records (``event_id``, ``sku``, ``competitor``, ``price``,
            ``in_stock``, ``event_time``).
        slide_s: Window slide.
        short_s: Window size (the short horizon).
        our_prices: Our shown prices (``sku``, ``event_time``, and ``price`` or ``price_seen``,
            e.g. the click history) for ``competitor_gap``; NaN gap without them.
        window_ends: Only these window ends (epoch ms); default every aligned non-empty window.

    Returns:
        One row per (sku, window end) with at least one in-stock competitor, columns
        :data:`COMPETITION_COLUMNS`.
    """
    if short_s % slide_s or short_s <= 0:
        raise ValueError("short_s must be a positive whole multiple of slide_s")
    prices = _dedupe(prices, "event_id")
    empty = pd.DataFrame({name: pd.Series(dtype="float64") for name in COMPETITION_COLUMNS}).astype(
        {"sku": object, "competitor_offers": "int64", "event_time": "int64"}
    )
    if prices.empty:
        return empty
    sku_codes, sku_names = pd.factorize(prices["sku"], sort=True)
    codes = sku_codes.astype(np.int64)
    times = _times(prices)
    slide_ms, short_ms = slide_s * 1000, short_s * 1000
    if window_ends is None:
        q_codes, q_ends = _aligned_ends(codes, times, slide_ms, short_ms)
    else:
        q_codes, q_ends = _requested_ends(codes, window_ends)
    if q_ends.size == 0:
        return empty
    competitor_codes, competitor_names = pd.factorize(prices["competitor"])
    n_competitors = len(competitor_names)
    t0 = int(min(times.min(), q_ends.min() - short_ms)) - 1
    span = int(max(times.max(), q_ends.max()) - t0) + 2
    pair_codes = codes * n_competitors + competitor_codes.astype(np.int64)
    price_values = pd.to_numeric(prices["price"]).to_numpy(dtype=np.float64)
    in_stock = prices["in_stock"].fillna(False).to_numpy(dtype=bool)
    latest_price = np.full((q_ends.size, n_competitors), np.nan)
    latest_time = np.full((q_ends.size, n_competitors), np.nan)
    for competitor in range(n_competitors):
        index, valid = _latest_before(pair_codes, times, q_codes * n_competitors + competitor, q_ends, t0, span)
        valid &= times[index] >= q_ends - short_ms
        valid &= in_stock[index]
        latest_price[valid, competitor] = price_values[index[valid]]
        latest_time[valid, competitor] = times[index[valid]]
    offers = np.sum(~np.isnan(latest_price), axis=1)
    keep = offers > 0
    with np.errstate(all="ignore"):
        minimum = np.nanmin(np.where(keep[:, None], latest_price, 0.0), axis=1)
        median = np.nanmedian(np.where(keep[:, None], latest_price, 0.0), axis=1)
        oldest = np.nanmin(np.where(keep[:, None], latest_time, 0.0), axis=1)
    gap = np.full(q_ends.size, np.nan)
    if our_prices is not None and not our_prices.empty:
        ours = _dedupe(our_prices, "event_id")
        column = "price" if "price" in ours.columns else "price_seen"
        our_codes = pd.Categorical(ours["sku"], categories=sku_names).codes.astype(np.int64)
        known = our_codes >= 0
        our_times = _times(ours)[known]
        our_values = pd.to_numeric(ours[column]).to_numpy(dtype=np.float64)[known]
        if our_times.size:
            o_t0 = min(t0, int(our_times.min()) - 1)
            o_span = int(max(span + t0, int(our_times.max()) + 2) - o_t0)
            index, valid = _latest_before(our_codes[known], our_times, q_codes, q_ends, o_t0, o_span)
            with np.errstate(all="ignore"):
                gap = np.where(valid, (our_values[index] - minimum) / minimum, np.nan)
    frame = pd.DataFrame(
        {
            "sku": np.asarray(sku_names)[q_codes],
            "competitor_min_price": minimum,
            "competitor_median_price": median,
            "competitor_offers": offers.astype(np.int64),
            "competitor_staleness_s": (q_ends - oldest) / 1000.0,
            "competitor_gap": gap,
            "event_time": q_ends,
        }
    )[keep]
    return frame.sort_values(["event_time", "sku"], kind="stable").reset_index(drop=True)


def user_session_frame(clicks: pd.DataFrame, horizon_s: int = 1800) -> pd.DataFrame:
    """The ``user_session`` rows of a click history: one per view event (see the module docstring).

    Args:
        clicks: ``click_event`` records (``event_id``, ``event_type``, ``user_key``,
            ``price_seen``, ``event_time``).
        horizon_s: How far back "recent" reaches (30 minutes: the ``user_session`` TTL).

    Returns:
        Columns :data:`SESSION_COLUMNS`, sorted by event time.
    """
    clicks = _dedupe(clicks, "event_id")
    if clicks.empty:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in SESSION_COLUMNS}).astype(
            {"user_key": object, "recent_views": "int64", "recent_carts": "int64", "event_time": "int64"}
        )
    frame = pd.DataFrame(
        {
            "user": pd.factorize(clicks["user_key"])[0].astype(np.int64),
            "user_key": clicks["user_key"].to_numpy(),
            "time": _times(clicks),
            "view": (clicks["event_type"] == "view").to_numpy(),
            "cart": (clicks["event_type"] == "add_to_cart").to_numpy(),
            "price": pd.to_numeric(clicks["price_seen"]).to_numpy(dtype=np.float64),
        }
    ).sort_values(["user", "time"], kind="stable")
    user, t = frame["user"].to_numpy(), frame["time"].to_numpy()
    horizon_ms = horizon_s * 1000
    t0 = int(t.min()) - horizon_ms - 1
    span = int(t.max() - t0) + 2
    keys = user * span + (t - t0)  # already sorted
    first = np.searchsorted(keys, keys - horizon_ms, side="right")  # first event in (t − h, t]
    last = np.arange(keys.size) + 1

    def window_sum(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        cumulative = np.concatenate(([0.0], np.cumsum(values)))
        return np.asarray(cumulative[last] - cumulative[first], dtype=np.float64)

    view = frame["view"].to_numpy()
    views = window_sum(view.astype(np.float64))
    carts = window_sum(frame["cart"].to_numpy().astype(np.float64))
    price_sum = window_sum(np.where(view, np.nan_to_num(frame["price"].to_numpy()), 0.0))
    previous_same_user = np.zeros(t.size, dtype=bool)
    previous_same_user[1:] = user[1:] == user[:-1]
    previous_t = np.concatenate(([0], t[:-1]))
    out = pd.DataFrame(
        {
            "user_key": frame["user_key"].to_numpy(),
            "recent_views": views.astype(np.int64),
            "recent_carts": carts.astype(np.int64),
            "mean_price_seen": price_sum / np.maximum(views, 1),
            "dwell_s": (t - t[first]) / 1000.0,
            "recency_s": np.where(previous_same_user, (t - previous_t) / 1000.0, 0.0),
            "event_time": t,
        }
    )[view]
    return out.sort_values(["event_time", "user_key"], kind="stable").reset_index(drop=True)


def sku_review_frame(reviews: pd.DataFrame) -> pd.DataFrame:
    """The ``sku_review_summary`` rows of a review history: the running summary after each review.

    Args:
        reviews: ``review`` records (``review_id``, ``sku``, ``rating``, ``event_time``), optionally
            with ``sentiment`` in [−1, 1] and ``review_embedding`` (384 floats) per review.

    Returns:
        Columns :data:`REVIEW_COLUMNS`; ``sentiment`` is NaN and ``review_embedding`` None
        when the input lacks them. Reviews of one sku at the same millisecond share one row.
    """
    reviews = _dedupe(reviews, "review_id")
    if reviews.empty:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in REVIEW_COLUMNS}).astype(
            {"sku": object, "review_count": "int64", "review_embedding": object, "event_time": "int64"}
        )
    frame = reviews.assign(event_time=_times(reviews)).sort_values(["sku", "event_time"], kind="stable")
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
    out = out[list(REVIEW_COLUMNS)]
    # Two reviews of one sku at the same millisecond: the row after both is the one that holds.
    out = out.drop_duplicates(subset=["sku", "event_time"], keep="last")
    return out.sort_values(["event_time", "sku"], kind="stable").reset_index(drop=True)
