"""The sentiment evaluation's statistics: Spearman with ties, bootstrap intervals, the paired gap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from pricewave.data.datasets import load_reviews
from pricewave.reviews.evaluation import (
    held_out_reviews,
    spearman,
    spearman_gap_with_interval,
    spearman_with_interval,
)


@pytest.mark.parametrize("seed", range(5))
def test_spearman_equals_scipys_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ratings = rng.integers(0, 2, size=300).astype(float)  # two levels: ties everywhere, as a great/other label
    scores = ratings + rng.normal(size=300)
    assert spearman(scores, ratings) == pytest.approx(spearmanr(scores, ratings).statistic, abs=1e-12)


def test_spearman_of_a_constant_side_is_nan() -> None:
    assert np.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_the_interval_holds_the_estimate_and_narrows_with_more_texts() -> None:
    rng = np.random.default_rng(0)
    ratings = rng.normal(size=2000)
    scores = ratings + rng.normal(size=2000)
    rho, low, high = spearman_with_interval(scores, ratings, resamples=300)
    small_rho, small_low, small_high = spearman_with_interval(scores[:200], ratings[:200], resamples=300)
    assert low < rho < high and small_low < small_rho < small_high
    assert high - low < small_high - small_low


def test_the_gap_is_paired_so_a_shared_noise_cancels() -> None:
    # Both scorers share most of their noise: each alone is uncertain, the gap between them is not.
    rng = np.random.default_rng(1)
    ratings = rng.normal(size=500)
    shared = rng.normal(size=500)
    better, worse = ratings + shared, ratings + shared + 0.5 * rng.normal(size=500)
    gap, low, high = spearman_gap_with_interval(better, worse, ratings, resamples=300)
    assert gap == pytest.approx(spearman(better, ratings) - spearman(worse, ratings))
    assert 0 < low < gap < high
    _, alone_low, alone_high = spearman_with_interval(better, ratings, resamples=300)
    assert high - low < alone_high - alone_low


def test_the_held_out_set_shares_no_text_with_the_training_reviews() -> None:
    held_out = held_out_reviews()
    assert len(held_out) == 993
    assert not set(held_out["text"]) & set(load_reviews("training")["text"])
