"""How late input records arrive, and the out-of-orderness that would accept them.

The pricing job judges a record late when its event time is at least ``--out-of-orderness`` behind
the newest event time already seen on its Kafka partition (:func:`pricewave.job.sources.checked_view`);
late records are dead-lettered, and every second of out-of-orderness is a second every price waits.
So the bound should come from the input: :func:`lateness_ms` measures each record's lateness the way
the job does, :func:`recommended_out_of_orderness_s` picks the smallest bound that keeps the late share
under a target. ``pricewave topics lateness`` runs both on the tail of the input topics.

Example:
    >>> lateness = lateness_ms([1_000, 3_000, 2_500, 4_000, 900])
    >>> lateness.tolist()
    [0, 0, 500, 0, 3100]
    >>> recommended_out_of_orderness_s(lateness, late_share=0.2)
    0.6
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def lateness_ms(event_times_ms: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Each record's lateness on one partition, in offset order: the newest event time before it
    (itself included) minus its own event time; 0 for a record that is the newest so far."""
    times = np.asarray(event_times_ms, dtype=np.int64)
    if times.size == 0:
        return times
    return np.maximum.accumulate(times) - times


def late_share(lateness: npt.NDArray[np.int64], out_of_orderness_s: float) -> float:
    """The share of records the job would dead-letter as late with this bound (``lateness >= bound``;
    with no bound, any record behind the newest).

    Example:
        >>> late_share(np.array([0, 0, 500, 0, 3100]), 0.5)
        0.4
    """
    if lateness.size == 0:
        return 0.0
    bound_ms = round(out_of_orderness_s * 1000)
    late = lateness >= bound_ms if bound_ms > 0 else lateness > 0
    return float(late.mean())


def recommended_out_of_orderness_s(
    lateness: npt.NDArray[np.int64], late_share: float = 0.001, step_s: float = 0.1
) -> float:
    """The smallest bound, a multiple of ``step_s``, under which at most ``late_share`` of the records are late.

    A record is late when its lateness reaches the bound, so the bound must exceed the lateness of
    every record it keeps: the ``1 - late_share`` quantile (highest kept record) plus one millisecond,
    rounded up to the step.
    """
    if lateness.size == 0:
        return 0.0
    keep = max(0, math.ceil(lateness.size * (1.0 - late_share)) - 1)  # index of the latest record kept
    latest_kept = int(np.sort(lateness)[keep])
    needed_ms = latest_kept + 1 if latest_kept > 0 else 0
    step_ms = round(step_s * 1000)
    return math.ceil(needed_ms / step_ms) * step_ms / 1000 if needed_ms else 0.0
