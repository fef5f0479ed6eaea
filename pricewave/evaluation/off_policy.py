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
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from pricewave.errors import DataError

if TYPE_CHECKING:
    from pricewave.pricing.artifact import ModelArtifact
    from pricewave.pricing.policy import PricingPolicy

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


def _rewards_and_weights(
    rewards: npt.ArrayLike, target_probability: npt.ArrayLike, logged_propensity: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    (reward,) = _arrays(rewards)
    weights = importance_weights(target_probability, logged_propensity)
    _arrays(reward, weights)  # the same length
    return reward, weights


def ips_estimate(
    rewards: npt.ArrayLike,
    target_probability: npt.ArrayLike,
    logged_propensity: npt.ArrayLike,
    *,
    confidence: float = 0.95,
) -> OffPolicyEstimate:
    """Inverse propensity scoring: the mean of ``w · r`` (see the module docstring)."""
    reward, weights = _rewards_and_weights(rewards, target_probability, logged_propensity)
    return _mean_with_interval("ips", weights * reward, weights, confidence)


def snips_estimate(
    rewards: npt.ArrayLike,
    target_probability: npt.ArrayLike,
    logged_propensity: npt.ArrayLike,
    *,
    confidence: float = 0.95,
) -> OffPolicyEstimate:
    """Self-normalized IPS: ``Σ w·r / Σ w``, with a delta-method interval."""
    reward, weights = _rewards_and_weights(rewards, target_probability, logged_propensity)
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


# --------------------------------------------------------------------------------------------
# Pricing policies on a decision log: which prices a candidate would show, and what they earn.
# --------------------------------------------------------------------------------------------

ESTIMATORS = ("ips", "snips", "doubly_robust")

LOGGED_COLUMNS = ("sku", "base_price", "cost", "event_time", "price", "propensity", "views", "purchases", "margin")
"""What a logged decision needs besides the features the policies read: the decision's inputs
(``sku``, ``base_price``, ``cost``, ``event_time``, and the guardrail inputs ``map_price``,
``ceiling``, ``last_published`` where known), the price shown, its logged propensity, and its
outcome over the time it was shown: ``views``, ``purchases`` and realized ``margin``."""


def logged_decisions(decisions: pd.DataFrame, *, allow_empty: bool = False) -> pd.DataFrame:
    """The decisions an off-policy estimate can use, with ``reward`` = realized margin per view.

    Keeps the decisions that were shown (``views`` > 0) with a finite price and a propensity in
    (0, 1]. The reward is per view so that a decision shown to many views does not count as many
    decisions: the policy value is the mean margin per view of a decision.

    Raises:
        DataError: A column of :data:`LOGGED_COLUMNS` is absent, or no decision is usable (unless
            ``allow_empty``: then the result is empty).
    """
    absent = [name for name in LOGGED_COLUMNS if name not in decisions.columns]
    if absent:
        raise DataError(f"the decision log lacks columns {', '.join(absent)}")
    propensity = decisions["propensity"].to_numpy(dtype=np.float64)
    price = decisions["price"].to_numpy(dtype=np.float64)
    views = decisions["views"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        usable = (views > 0) & np.isfinite(price) & (propensity > 0) & (propensity <= 1)
    logged = decisions[usable].reset_index(drop=True)
    if logged.empty and not allow_empty:
        raise DataError("no logged decision was shown with a price and a propensity: nothing to estimate from")
    return logged.assign(
        reward=logged["margin"].to_numpy(dtype=np.float64) / logged["views"].to_numpy(dtype=np.float64)
    )


def view_labels(logged: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """One label per logged view, decision by decision: its first ``purchases`` views count as bought.

    Example:
        >>> view_labels(pd.DataFrame({"views": [3, 2], "purchases": [1, 5]})).tolist()
        [True, False, False, True, True]
    """
    views = logged["views"].to_numpy(dtype=np.int64)
    bought = np.minimum(logged["purchases"].to_numpy(dtype=np.int64), views)
    position = np.arange(int(views.sum())) - np.repeat(np.cumsum(views) - views, views)
    return np.asarray(position < np.repeat(bought, views))


def purchase_probability(artifact: ModelArtifact, frame: pd.DataFrame, prices: npt.ArrayLike) -> FloatArray:
    """The model's P(buy) of each row at each price, (B, K) for prices (B, K) (or (B,) → (B, 1)).

    Rows lacking a required feature get NaN.
    """
    from pricewave.pricing.demand_model import price_response_logits
    from pricewave.pricing.features import build_embedding_matrix, build_feature_matrix

    grid = np.asarray(prices, dtype=np.float64)
    grid = grid.reshape(-1, 1) if grid.ndim == 1 else grid
    x, missing = build_feature_matrix(frame)
    emb, has_emb = build_embedding_matrix(frame)
    model = artifact.model
    parameter = next(model.parameters())
    with torch.no_grad():
        base, elasticity = model.decompose(
            torch.as_tensor(x, device=parameter.device, dtype=parameter.dtype),
            torch.as_tensor(emb, device=parameter.device, dtype=parameter.dtype) if has_emb.any() else None,
        )
        ref = frame["base_price"].to_numpy(dtype=np.float64).reshape(-1, 1)
        log_ratio = torch.as_tensor(np.log(grid / ref), device=parameter.device, dtype=parameter.dtype)
        probability = torch.sigmoid(price_response_logits(base, elasticity, log_ratio)).cpu().numpy()
    return np.where(missing[:, None], np.nan, probability.astype(np.float64))


@dataclass(frozen=True)
class RewardModel:
    """Expected margin per view of a price: ``scale · (price − cost) · P̂(buy | features, price)``.

    ``P̂`` is a demand model's (normally the serving one's, fixed before the log was written).
    ``scale`` matches the model's mean to the log's (units per purchase, and the model's level):
    Σ reward / Σ prediction at the shown prices. The doubly robust estimate stays unbiased when the
    reward model is wrong; a closer one only narrows its interval.
    """

    artifact: ModelArtifact
    scale: float = 1.0

    @classmethod
    def fit(cls, artifact: ModelArtifact, logged: pd.DataFrame) -> RewardModel:
        """Scale ``artifact``'s margin to the rewards of :func:`logged_decisions` rows."""
        predicted = cls(artifact).predict(logged, logged["price"].to_numpy(dtype=np.float64))[:, 0]
        usable = np.isfinite(predicted)
        total = float(predicted[usable].sum())
        scale = float(logged["reward"].to_numpy(dtype=np.float64)[usable].sum()) / total if total > 0 else 1.0
        return cls(artifact, scale if math.isfinite(scale) and scale > 0 else 1.0)

    def predict(self, frame: pd.DataFrame, prices: npt.ArrayLike) -> FloatArray:
        """Expected margin per view at each price, the shape of :func:`purchase_probability`'s output."""
        grid = np.asarray(prices, dtype=np.float64)
        grid = grid.reshape(-1, 1) if grid.ndim == 1 else grid
        cost = frame["cost"].to_numpy(dtype=np.float64).reshape(-1, 1)
        return self.scale * (grid - cost) * purchase_probability(self.artifact, frame, grid)


@dataclass(frozen=True)
class PolicyTerms:
    """One policy's per-decision quantities on a log: its probability of the shown price and q̂(π)."""

    target_probability: FloatArray
    predicted_value: FloatArray


def policy_terms(policy: PricingPolicy, logged: pd.DataFrame, reward_model: RewardModel) -> PolicyTerms:
    """What the estimators need of ``policy`` on the logged contexts (its action distribution).

    Rows the reward model cannot score (a feature missing) get q̂ = 0: the doubly robust estimate
    is then IPS on those rows.
    """
    distribution = policy.action_distribution(logged)
    predicted = reward_model.predict(logged, np.nan_to_num(distribution.prices, nan=0.0))
    value = distribution.expectation(np.nan_to_num(predicted, nan=0.0))
    return PolicyTerms(distribution.probability(logged["price"].to_numpy(dtype=np.float64)), value)


def estimate_policy_value(
    policy: PricingPolicy,
    logged: pd.DataFrame,
    reward_model: RewardModel,
    *,
    confidence: float = 0.95,
) -> dict[str, OffPolicyEstimate]:
    """IPS, self-normalized IPS and doubly robust estimates of ``policy``'s margin per view.

    Args:
        policy: The policy to evaluate, with the exploration share it would serve with.
        logged: Rows of :func:`logged_decisions`.
        reward_model: The doubly robust estimate's reward model.
        confidence: Coverage of the intervals.
    """
    return _estimates(policy_terms(policy, logged, reward_model), _Outcomes.of(logged, reward_model), confidence)


@dataclass(frozen=True)
class _Outcomes:
    """What the log says of each decision, read once: reward, logged propensity, q̂ of the shown price."""

    rewards: FloatArray
    propensity: FloatArray
    predicted_shown: FloatArray

    @classmethod
    def of(cls, logged: pd.DataFrame, reward_model: RewardModel) -> _Outcomes:
        shown = reward_model.predict(logged, logged["price"].to_numpy(dtype=np.float64))[:, 0]
        return cls(
            logged["reward"].to_numpy(dtype=np.float64),
            logged["propensity"].to_numpy(dtype=np.float64),
            np.nan_to_num(shown, nan=0.0),
        )

    def doubly_robust_terms(self, terms: PolicyTerms) -> FloatArray:
        """Per decision: ``q̂(π) + w · (r − q̂(shown))``."""
        weights = importance_weights(terms.target_probability, self.propensity)
        return np.asarray(terms.predicted_value + weights * (self.rewards - self.predicted_shown))


def _estimates(terms: PolicyTerms, outcomes: _Outcomes, confidence: float) -> dict[str, OffPolicyEstimate]:
    r, p, target = outcomes.rewards, outcomes.propensity, terms.target_probability
    estimates = {
        "ips": ips_estimate(r, target, p, confidence=confidence),
        "doubly_robust": doubly_robust_estimate(
            r, target, p, outcomes.predicted_shown, terms.predicted_value, confidence=confidence
        ),
    }
    if target.sum() > 0:
        estimates["snips"] = snips_estimate(r, target, p, confidence=confidence)
    return {name: estimates[name] for name in ESTIMATORS if name in estimates}


@dataclass(frozen=True)
class PolicyComparison:
    """A candidate policy against the serving one on the same log (doubly robust, paired)."""

    candidate: dict[str, OffPolicyEstimate]
    serving: dict[str, OffPolicyEstimate]
    difference: OffPolicyEstimate
    """Candidate minus serving, per decision, so the log's shared noise cancels."""


def compare_policies(
    candidate: PricingPolicy,
    serving: PricingPolicy,
    logged: pd.DataFrame,
    reward_model: RewardModel,
    *,
    confidence: float = 0.95,
) -> PolicyComparison:
    """Both policies' estimates and their paired doubly robust difference on one log.

    Each policy's action distribution and the reward model's predictions are computed once.
    """
    outcomes = _Outcomes.of(logged, reward_model)
    new, old = policy_terms(candidate, logged, reward_model), policy_terms(serving, logged, reward_model)
    difference = outcomes.doubly_robust_terms(new) - outcomes.doubly_robust_terms(old)
    weights = importance_weights(new.target_probability, outcomes.propensity)
    return PolicyComparison(
        candidate=_estimates(new, outcomes, confidence),
        serving=_estimates(old, outcomes, confidence),
        difference=_mean_with_interval("doubly_robust_difference", difference, weights, confidence),
    )
