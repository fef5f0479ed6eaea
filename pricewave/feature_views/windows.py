"""Event-time windows over pandas frames, as Flink computes them: the offline side's shared helpers.

Half-open windows ``[end − horizon, end)`` whose ends are multiples of the slide (aligned to the
epoch like Flink's HOP windows), counted for many groups and window ends at once with one
``searchsorted`` over a combined (group, time) key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

IntArray = npt.NDArray[np.int64]


class WindowOptions(Protocol):
    """The window lengths a view's streaming SQL needs (:class:`pricewave.job.options.JobOptions` has them)."""

    @property
    def window_slide_s(self) -> int: ...

    @property
    def short_horizon_s(self) -> int: ...

    @property
    def long_horizon_s(self) -> int: ...

    @property
    def session_gap_s(self) -> int: ...


def dedupe(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    if id_column not in frame.columns:
        return frame
    return frame.drop_duplicates(subset=[id_column], keep="first")


def event_times(frame: pd.DataFrame) -> IntArray:
    return np.asarray(pd.to_numeric(frame["event_time"]).to_numpy(), dtype=np.int64)


class GroupedTimes:
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


def aligned_ends(codes: IntArray, times: IntArray, slide_ms: int, horizon_ms: int) -> tuple[IntArray, IntArray]:
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


def requested_ends(codes_present: IntArray, window_ends: Iterable[int]) -> tuple[IntArray, IntArray]:
    ends = np.asarray(sorted({int(e) for e in window_ends}), dtype=np.int64)
    groups = np.unique(codes_present)
    return np.repeat(groups, ends.size), np.tile(ends, groups.size)


def distinct_count(
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
    starts = GroupedTimes(c, t, t0, span)
    stops = GroupedTimes(c, stop, t0, span)
    group_start = q_codes * span
    query = group_start + (q_ends - t0)
    started = np.searchsorted(starts.keys, query, side="left") - np.searchsorted(starts.keys, group_start, side="left")
    stopped = np.searchsorted(stops.keys, query, side="left") - np.searchsorted(stops.keys, group_start, side="left")
    return np.asarray(started - stopped, dtype=np.int64)


def latest_before(
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


def window_queries(
    events: pd.DataFrame, slide_ms: int, horizon_ms: int, window_ends: Iterable[int] | None
) -> tuple[pd.Index, IntArray, IntArray, IntArray, IntArray]:
    """What a per-sku windowed view computes: every aligned non-empty window, or the requested ends.

    Returns:
        The sku names (by code), each event's sku code and time, and the (sku code, window end)
        pairs to compute.
    """
    sku_codes, sku_names = pd.factorize(events["sku"], sort=True)
    codes = sku_codes.astype(np.int64)
    times = event_times(events)
    if window_ends is None:
        q_codes, q_ends = aligned_ends(codes, times, slide_ms, horizon_ms)
    else:
        q_codes, q_ends = requested_ends(codes, window_ends)
    return sku_names, codes, times, q_codes, q_ends


class TrailingRangeWindow:
    """Per key, each row's trailing event-time window ``[t − horizon, t]``, as a SQL OVER ``RANGE`` frame.

    Rows must be sorted by (key code, time). Both ends are inclusive and rows at the same
    millisecond are all in each other's window (``RANGE BETWEEN <horizon> PRECEDING AND CURRENT ROW``).

    Example:
        >>> import numpy as np
        >>> window = TrailingRangeWindow(np.array([0, 0, 0, 1]), np.array([0, 5, 5, 7]), horizon_ms=5)
        >>> window.sum(np.ones(4)).tolist()
        [1.0, 3.0, 3.0, 1.0]
    """

    def __init__(self, codes: IntArray, times: IntArray, horizon_ms: int) -> None:
        self.times = times
        t0 = int(times.min()) - horizon_ms - 1 if times.size else 0
        span = int(times.max() - t0) + 2 if times.size else 1
        self.keys = codes * span + (times - t0)  # sorted, as the rows are
        self.first = np.searchsorted(self.keys, self.keys - horizon_ms, side="left")  # first row in [t − h, t]
        self.last = np.searchsorted(self.keys, self.keys, side="right")  # past the last row at t
        self.codes = codes

    def sum(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Each row's window sum of ``values`` (aligned with the rows)."""
        cumulative = np.concatenate(([0.0], np.cumsum(values)))
        return np.asarray(cumulative[self.last] - cumulative[self.first], dtype=np.float64)

    def previous_time(self) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """Each row's key's latest time at an earlier millisecond, and whether there is one."""
        previous = np.searchsorted(self.keys, self.keys, side="left") - 1
        has_previous = previous >= 0
        has_previous[has_previous] = self.codes[previous[has_previous]] == self.codes[has_previous]
        return self.times[np.maximum(previous, 0)], has_previous
