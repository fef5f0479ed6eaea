"""Off-policy estimates of a pricing policy's value from logged decisions and their propensities.

The job logs every decision with the propensity of the price it showed under the serving policy
(ε-greedy over the optimizer's candidates, :mod:`pricewave.pricing.exploration`). For a candidate
policy that gives each logged context a distribution over the same shown prices, these estimators
say what margin per decision the candidate would have earned, without deploying it:

* **IPS** (inverse propensity scoring): the mean of ``w · r`` with ``w = π_new(shown) / π_logged(shown)``.
  Unbiased when every price the candidate may show had a positive logged propensity; its variance
  grows with the weights.
* **Self-normalized IPS**: divides by the mean weight instead of 1; slightly biased, far steadier when
  a few weights are large.
* **Doubly robust**: a reward model's value of the candidate, corrected by the weighted residuals of
  the logged rewards: ``q̂(π_new) + w · (r − q̂(shown))``. Unbiased if either the propensities or the
  reward model are right, and usually the least variable.

Each estimate comes with a normal-approximation interval from the per-decision terms and the
effective sample size of the weights (Kish), which says how many logged decisions the estimate
really rests on.

Example:
    >>> rewards = np.array([1.0, 0.0, 2.0, 1.0])
    >>> logged = np.array([0.5, 0.5, 0.25, 0.25])
    >>> target = np.array([1.0, 0.0, 0.5, 0.5])
    >>> estimate = ips_estimate(rewards, target, logged)
    >>> round(estimate.value, 3), estimate.n
    (2.0, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class OffPolicyEstimate:
    """A candidate policy's estimated value per decision.

    Attributes:
        method: ``ips``, ``snips`` or ``doubly_robust``.
        value: The estimate (the reward's unit: margin per decision).
        low: Lower end of the interval.
        high: Upper end.
        n: Logged decisions used.
        effective_sample_size: Kish's ``(Σw)² / Σw²``: n when every weight is equal, small when a few
            weights dominate.
    """

    method: str
    value: float
    low: float
    high: float
    n: int
    effective_sample_size: float

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval."""
        return self.low <= value <= self.high


def _arrays(*values: npt.ArrayLike) -> list[FloatArray]:
    arrays = [np.asarray(value, dtype=np.float64).reshape(-1) for value in values]
    if len({array.size for array in arrays}) != 1:
        raise ValueError(f"the inputs differ in length: {[array.size for array in arrays]}")
    if arrays[0].size == 0:
        raise ValueError("no logged decisions to estimate from")
    if not all(np.isfinite(array).all() for array in arrays):
        raise ValueError("the inputs hold NaN or infinite values")
    return arrays


def importance_weights(target_probability: npt.ArrayLike, logged_propensity: npt.ArrayLike) -> FloatArray:
    """``π_new(shown) / π_logged(shown)`` per decision.

    Raises:
        ValueError: A logged propensity outside (0, 1] or a target probability outside [0, 1].
    """
    target, logged = _arrays(target_probability, logged_propensity)
    if ((logged <= 0) | (logged > 1)).any():
        raise ValueError("logged propensities must lie in (0, 1]")
    if ((target < 0) | (target > 1)).any():
        raise ValueError("target probabilities must lie in [0, 1]")
    return target / logged


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _effective_sample_size(weights: FloatArray) -> float:
    total = float((weights**2).sum())
    return float(weights.sum() ** 2 / total) if total > 0 else 0.0


def _mean_with_interval(method: str, terms: FloatArray, weights: FloatArray, confidence: float) -> OffPolicyEstimate:
    value = float(terms.mean())
    half = _z(confidence) * float(terms.std(ddof=1)) / math.sqrt(terms.size) if terms.size > 1 else math.inf
    return OffPolicyEstimate(method, value, value - half, value + half, terms.size, _effective_sample_size(weights))


def ips_estimate(
    rewards: npt.ArrayLike,
    target_probability: npt.ArrayLike,
    logged_propensity: npt.ArrayLike,
    *,
    confidence: float = 0.95,
) -> OffPolicyEstimate:
    """Inverse propensity scoring: the mean of ``w · r`` (see the module docstring)."""
    (reward,) = _arrays(rewards)
    weights = importance_weights(target_probability, logged_propensity)
    _arrays(reward, weights)
    return _mean_with_interval("ips", weights * reward, weights, confidence)


def snips_estimate(
    rewards: npt.ArrayLike,
    target_probability: npt.ArrayLike,
    logged_propensity: npt.ArrayLike,
    *,
    confidence: float = 0.95,
) -> OffPolicyEstimate:
    """Self-normalized IPS: ``Σ w·r / Σ w``, with a delta-method interval."""
    (reward,) = _arrays(rewards)
    weights = importance_weights(target_probability, logged_propensity)
    _arrays(reward, weights)
    mean_weight = float(weights.mean())
    if mean_weight <= 0:
        raise ValueError("the candidate gives every logged price probability 0: nothing to estimate from")
    value = float((weights * reward).sum() / weights.sum())
    # The ratio estimator's linearization: its per-decision terms are w · (r − value) / mean(w).
    terms = weights * (reward - value) / mean_weight
    half = _z(confidence) * float(terms.std(ddof=1)) / math.sqrt(terms.size) if terms.size > 1 else math.inf
    return OffPolicyEstimate("snips", value, value - half, value + half, terms.size, _effective_sample_size(weights))


def doubly_robust_estimate(
    rewards: npt.ArrayLike,
    target_probability: npt.ArrayLike,
    logged_propensity: npt.ArrayLike,
    predicted_reward_shown: npt.ArrayLike,
    predicted_value_target: npt.ArrayLike,
    *,
    confidence: float = 0.95,
) -> OffPolicyEstimate:
    """Doubly robust: ``q̂(π_new) + w · (r − q̂(shown))`` per decision, averaged.

    Args:
        rewards: The logged reward of each decision (its realized margin).
        target_probability: ``π_new(shown)`` per decision.
        logged_propensity: ``π_logged(shown)`` per decision.
        predicted_reward_shown: The reward model's expected reward of the price that was shown.
        predicted_value_target: The reward model's expected reward under the candidate policy, i.e.
            ``Σ_price π_new(price) · q̂(price)`` for the decision's context.
        confidence: Coverage of the interval.
    """
    reward, predicted_shown, predicted_target = _arrays(rewards, predicted_reward_shown, predicted_value_target)
    weights = importance_weights(target_probability, logged_propensity)
    _arrays(reward, weights)
    terms = predicted_target + weights * (reward - predicted_shown)
    return _mean_with_interval("doubly_robust", terms, weights, confidence)
