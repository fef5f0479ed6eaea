"""Measured lateness and the out-of-orderness it calls for (pricewave.lateness), as the job judges late."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pricewave.lateness import late_share, lateness_ms, recommended_out_of_orderness_s


def job_is_late(event_times: list[int], bound_ms: int) -> list[bool]:
    """The job's verdict (checked_view): at or more than the bound behind the partition's max so far."""
    verdicts, newest = [], None
    for t in event_times:
        newest = t if newest is None else max(newest, t)
        verdicts.append(t <= newest - bound_ms if bound_ms > 0 else t < newest)
    return verdicts


@given(st.lists(st.integers(0, 10**7), max_size=200), st.integers(0, 20_000))
def test_the_late_share_is_the_jobs_verdict(event_times: list[int], bound_ms: int) -> None:
    expected = float(np.mean(job_is_late(event_times, bound_ms))) if event_times else 0.0
    assert late_share(lateness_ms(event_times), bound_ms / 1000) == pytest.approx(expected)


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=300), st.sampled_from([0.0, 0.001, 0.01, 0.2]))
def test_the_recommended_bound_is_the_smallest_step_that_keeps_the_share(event_times: list[int], target: float) -> None:
    lateness = lateness_ms(event_times)
    bound = recommended_out_of_orderness_s(lateness, target)
    assert late_share(lateness, bound) <= target + 1e-12
    if bound > 0:  # one step less lets more than the target through
        assert late_share(lateness, round(bound - 0.1, 1)) > target


def test_in_order_input_needs_no_bound() -> None:
    lateness = lateness_ms([1, 2, 2, 5, 9])
    assert lateness.tolist() == [0, 0, 0, 0, 0]
    assert recommended_out_of_orderness_s(lateness) == 0.0
    assert recommended_out_of_orderness_s(lateness_ms([])) == 0.0
