"""Bounded exploration with logged propensities, so new policies can be evaluated offline.

An ε-greedy policy over the optimizer's K candidates, which all lie inside the guardrail-feasible
interval: with probability 1 − ε a decision shows the greedy candidate, with probability ε a
candidate drawn uniformly from all K (the greedy one included). So the probability of showing
candidate j is

    (1 − ε) + ε / K   for the greedy candidate,        ε / K   otherwise,

and ε is bounded by :data:`MAX_EPSILON`. Draws are a keyed hash of (seed, decision key): a replay
of the same decisions explores the same way, and no random state is shared between workers.
When guardrail rounding maps several candidates to the same shown price,
:func:`shown_price_propensity` sums their probabilities: the propensity of the shown price.

Example:
    >>> import numpy as np
    >>> result = explore(np.array([3, 3]), k=8, epsilon=0.1, decision_keys=["a|1", "b|1"], seed=7)
    >>> result.index.shape, bool(np.isin(result.propensity, [0.9 + 0.1 / 8, 0.1 / 8]).all())
    ((2,), True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pricewave.errors import ConfigError

DEFAULT_EPSILON = 0.05
MAX_EPSILON = 0.2
EXPLORED_BELOW_PROPENSITY = 0.5
"""A shown price with a propensity below this was not the greedy candidate: the greedy price is shown
with probability at least 1 − ε ≥ 0.8, any other (all others together, after rounding) at most ε ≤ 0.2.
Every decision of an ε-greedy policy has a propensity below 1, so that is no sign of exploring."""
_U32 = float(2**32)


def check_epsilon(epsilon: float) -> float:
    """Validate an exploration share. Raises ConfigError outside [0, MAX_EPSILON]."""
    if not 0 <= epsilon <= MAX_EPSILON:
        raise ConfigError(f"exploration epsilon must be in [0, {MAX_EPSILON}], not {epsilon}")
    return float(epsilon)


def decision_hashes(decision_keys: Sequence[str] | pd.Series, seed: int) -> npt.NDArray[np.uint64]:
    """A 64-bit keyed hash per decision key (stable across processes and runs)."""
    hash_key = hashlib.blake2b(str(seed).encode(), digest_size=8).hexdigest()  # 16 characters
    keys = decision_keys if isinstance(decision_keys, pd.Series) else pd.Series(list(decision_keys), dtype=object)
    hashed = pd.util.hash_pandas_object(keys.astype(str), index=False, hash_key=hash_key)
    return np.asarray(hashed.to_numpy(), dtype=np.uint64)


@dataclass(frozen=True)
class ExplorationResult:
    """Per row: the candidate to show, whether the ε branch was taken, and its propensity."""

    index: npt.NDArray[np.int64]
    explored: npt.NDArray[np.bool_]
    propensity: npt.NDArray[np.float64]


def candidate_probabilities(greedy_index: Any, k: int, epsilon: float) -> npt.NDArray[np.float64]:
    """The policy's probability of each of the K candidates, (B, K); rows sum to 1."""
    greedy = np.asarray(greedy_index, dtype=np.int64).reshape(-1)
    probs = np.full((greedy.shape[0], k), epsilon / k)
    probs[np.arange(greedy.shape[0]), greedy] += 1 - epsilon
    return probs


def explore(
    greedy_index: Any,
    k: int,
    epsilon: float,
    decision_keys: Sequence[str] | pd.Series,
    *,
    seed: int = 0,
    eligible: Any = None,
) -> ExplorationResult:
    """ε-greedy choice among K candidates per row, deterministic per (seed, decision key).

    Args:
        greedy_index: The optimizer's best candidate per row, (B,).
        k: Number of candidates per row.
        epsilon: Exploration share in [0, MAX_EPSILON].
        decision_keys: A stable key per decision (e.g. ``sku|user_key|event_time``), (B,).
        seed: Varies the draws between experiments.
        eligible: Rows that may explore (B,) bool; the others show the greedy candidate with
            propensity 1 (e.g. kill-switch rows). Default: all.

    Returns:
        The chosen index, the explored flag and the propensity of the chosen candidate.
    """
    epsilon = check_epsilon(epsilon)
    greedy = np.asarray(greedy_index, dtype=np.int64).reshape(-1)
    n = greedy.shape[0]
    allowed = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool).reshape(-1)
    if n == 0:
        return ExplorationResult(greedy.copy(), np.zeros(0, dtype=bool), np.zeros(0))
    hashes = decision_hashes(decision_keys, seed)
    u = (hashes >> np.uint64(32)).astype(np.float64) / _U32  # high bits: whether to explore
    pick = ((hashes & np.uint64(0xFFFFFFFF)) % np.uint64(k)).astype(np.int64)  # low bits: which candidate
    explored = allowed & (u < epsilon)
    index = np.where(explored, pick, greedy)
    propensity = np.where(index == greedy, (1 - epsilon) + epsilon / k, epsilon / k)
    return ExplorationResult(index=index, explored=explored, propensity=np.where(allowed, propensity, 1.0))


def shown_price_propensity(
    shown_prices: Any,
    chosen_index: Any,
    greedy_index: Any,
    epsilon: float,
    *,
    eligible: Any = None,
) -> npt.NDArray[np.float64]:
    """Probability of the shown price when candidates can map to the same shown price.

    Args:
        shown_prices: The price each candidate would be shown at after guardrails, (B, K).
        chosen_index: The candidate chosen per row, (B,).
        greedy_index: The greedy candidate per row, (B,).
        epsilon: The exploration share the choice was made with.
        eligible: Rows that could explore (others: propensity 1).

    Returns:
        Σ over candidates j showing the same price of P(j), per row; 1 for non-eligible rows.
    """
    shown_all = np.asarray(shown_prices, dtype=np.float64)
    n, k = shown_all.shape
    rows = np.arange(n)
    chosen = np.asarray(chosen_index, dtype=np.int64).reshape(-1)
    shown = shown_all[rows, chosen]
    same = (shown_all == shown[:, None]) | (np.isnan(shown_all) & np.isnan(shown)[:, None])
    probs = candidate_probabilities(greedy_index, k, epsilon)
    propensity = (probs * same).sum(axis=1)
    allowed = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool).reshape(-1)
    return np.where(allowed, np.minimum(propensity, 1.0), 1.0)
