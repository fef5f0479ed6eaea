"""Exploration: bounded share, propensity math, determinism per decision key."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pricewave.errors import ConfigError
from pricewave.pricing.exploration import (
    EXPLORED_BELOW_PROPENSITY,
    MAX_EPSILON,
    candidate_probabilities,
    check_epsilon,
    explore,
    shown_price_propensity,
)

N = 20_000
KEYS = [f"SKU-{i % 97}|user-{i}|{1_735_689_600_000 + i}" for i in range(N)]


@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.2])
def test_propensity_is_the_probability_of_the_chosen_candidate(epsilon: float) -> None:
    k = 8
    greedy = np.arange(N) % k
    result = explore(greedy, k, epsilon, KEYS, seed=1)
    is_greedy = result.index == greedy
    assert np.allclose(result.propensity[is_greedy], (1 - epsilon) + epsilon / k)
    assert np.allclose(result.propensity[~is_greedy], epsilon / k)
    assert ((result.index >= 0) & (result.index < k)).all()
    assert not (result.index != greedy)[~result.explored].any()  # only explored rows move


def test_exploration_share_is_epsilon_and_the_draw_is_uniform() -> None:
    epsilon, k = 0.1, 5
    result = explore(np.zeros(N, dtype=int), k, epsilon, KEYS, seed=3)
    share = result.explored.mean()
    assert abs(share - epsilon) < 5 * np.sqrt(epsilon * (1 - epsilon) / N)
    counts = np.bincount(result.index, minlength=k) / N
    # the empirical frequency of each candidate matches the logged propensities
    expected = candidate_probabilities([0], k, epsilon)[0]
    assert np.allclose(counts, expected, atol=5 * np.sqrt(expected * (1 - expected) / N).max())


def test_epsilon_is_bounded() -> None:
    assert check_epsilon(MAX_EPSILON) == 0.2
    for bad in (-0.01, 0.21, 1.0):
        with pytest.raises(ConfigError, match="epsilon"):
            explore(np.zeros(3, dtype=int), 4, bad, ["a", "b", "c"])


def test_deterministic_per_seed_and_key() -> None:
    a = explore(np.zeros(N, dtype=int), 8, 0.2, KEYS, seed=5)
    b = explore(np.zeros(N, dtype=int), 8, 0.2, list(reversed(KEYS)), seed=5)
    c = explore(np.zeros(N, dtype=int), 8, 0.2, KEYS, seed=6)
    assert np.array_equal(a.index, b.index[::-1])  # a decision's draw depends on its key, not its position
    assert not np.array_equal(a.explored, c.explored)


def test_ineligible_rows_never_explore() -> None:
    eligible = np.arange(N) % 2 == 0
    result = explore(np.zeros(N, dtype=int), 8, 0.2, KEYS, eligible=eligible)
    assert not result.explored[~eligible].any()
    assert (result.propensity[~eligible] == 1.0).all()
    assert result.explored[eligible].any()


def test_candidate_probabilities_sum_to_one() -> None:
    probs = candidate_probabilities([0, 3, 7], 8, 0.15)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert probs[1, 3] == pytest.approx(0.85 + 0.15 / 8)


def test_shown_price_propensity_sums_candidates_that_show_the_same_price() -> None:
    shown = np.array([[9.99, 9.99, 10.99, 11.99], [9.99, 9.99, 10.99, 11.99]])
    got = shown_price_propensity(shown, chosen_index=[1, 2], greedy_index=[0, 0], epsilon=0.2)
    assert got == pytest.approx([0.8 + 0.05 + 0.05, 0.05])
    # all candidates show one price: it is shown for sure
    same = np.full((1, 4), 9.99)
    assert shown_price_propensity(same, [2], [0], 0.2) == pytest.approx([1.0])
    assert shown_price_propensity(shown[:1], [3], [0], 0.2, eligible=[False]) == pytest.approx([1.0])


def test_empty_batch() -> None:
    result = explore(np.zeros(0, dtype=int), 8, 0.1, [])
    assert result.index.shape == result.propensity.shape == (0,)


@given(
    k=st.integers(1, 12),
    epsilon=st.floats(0.0, MAX_EPSILON),
    distinct_prices=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_a_propensity_below_the_threshold_means_a_price_other_than_the_greedy_one_was_shown(
    k: int, epsilon: float, distinct_prices: int, seed: int
) -> None:
    """What the monitor counts as exploration: rounding may merge candidates' shown prices, yet the
    greedy price keeps a propensity of at least 1 - ε and any other price at most ε."""
    rng = np.random.default_rng(seed)
    rows = 200
    shown_prices = rng.integers(0, distinct_prices, size=(rows, k)).astype(float)
    greedy = rng.integers(0, k, size=rows)
    keys = [f"row-{seed}-{n}" for n in range(rows)]
    chosen = explore(greedy, k, epsilon, keys, seed=seed).index
    propensity = shown_price_propensity(shown_prices, chosen, greedy, epsilon)
    other_price = shown_prices[np.arange(rows), chosen] != shown_prices[np.arange(rows), greedy]
    assert ((propensity < EXPLORED_BELOW_PROPENSITY) == other_price).all()
    assert MAX_EPSILON < EXPLORED_BELOW_PROPENSITY < 1 - MAX_EPSILON
