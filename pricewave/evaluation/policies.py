"""The policies compared: static list price, competitor match, least-squares linear demand, and the network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pricewave.errors import ConfigError, DataError
from pricewave.pricing.artifact import ModelArtifact
from pricewave.pricing.features import FEATURE_NAMES, build_feature_matrix
from pricewave.pricing.guardrails import GuardrailPolicy, apply_guardrails_vectorized, feasible_interval
from pricewave.pricing.optimizer import candidate_grid

POLICIES: tuple[str, ...] = ("static", "competitor_match", "linear", "network")


@dataclass(frozen=True)
class LinearDemand:
    """The least-squares demand baseline: ``P(buy) ≈ [1, x, log(p / base)] · β``."""

    beta: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> LinearDemand:
        """β = (XᵀX)⁻¹Xᵀy (least squares, minimum-norm when X is rank deficient) on a training frame."""
        x, missing = build_feature_matrix(frame)
        ratio = frame["log_price_ratio"].to_numpy(dtype=np.float64)
        rows = ~missing & np.isfinite(ratio)
        if rows.sum() < 50:
            raise DataError("too few rows with features to fit the linear baseline")
        design = np.column_stack([np.ones(rows.sum()), x[rows].astype(np.float64), ratio[rows]])
        labels = frame["purchased"].to_numpy(dtype=np.float64)[rows]
        beta, *_ = np.linalg.lstsq(design, labels, rcond=None)
        return cls(beta)

    @property
    def price_coefficient(self) -> float:
        """The coefficient of log(price / base price)."""
        return float(self.beta[-1])

    def demand(self, x: npt.NDArray[np.float32], log_ratio: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Predicted P(buy) for rows ``x`` (n, F) at log price ratios (n, K), clipped to [0, 1]."""
        base = self.beta[0] + x.astype(np.float64) @ self.beta[1:-1]
        return np.asarray(np.clip(base[:, None] + self.beta[-1] * log_ratio, 0.0, 1.0), dtype=np.float64)

    def coefficients(self) -> dict[str, float]:
        """β by input name."""
        names = ["intercept", *FEATURE_NAMES, "log_price_ratio"]
        return {name: round(float(value), 6) for name, value in zip(names, self.beta, strict=True)}


class Pricer:
    """Turns a decision frame into prices for one policy (NaN = publish nothing).

    Args:
        policy: One of :data:`POLICIES`.
        guardrails: The guardrails every policy's prices pass.
        linear: The fitted least-squares baseline (``linear``).
        artifact: The model (``network``).
        exploration_epsilon: ``network`` only: the share of explored decisions, as the job's
            ``pricing.exploration_epsilon``; 0 prices greedily. Each call's propensities are in
            :attr:`last_propensity` (the other policies are deterministic: 1).
    """

    def __init__(
        self,
        policy: str,
        guardrails: GuardrailPolicy,
        linear: LinearDemand | None = None,
        artifact: ModelArtifact | None = None,
        *,
        exploration_epsilon: float = 0.0,
    ) -> None:
        self.policy = policy
        self.guardrails = guardrails
        self.linear = linear
        self.artifact = artifact
        self.network: Any = None
        self.last_propensity: npt.NDArray[np.float64] = np.ones(0)
        if policy == "network":
            from pricewave.pricing.policy import offline_policy

            if artifact is None:
                raise ConfigError("the network policy needs a model artifact")
            self.network = offline_policy(artifact, guardrails, exploration_epsilon)

    def prices(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """The price of every row of ``frame`` (NaN = publish nothing); propensities in :attr:`last_propensity`."""
        self.last_propensity = np.ones(len(frame))
        if self.policy == "network":
            decided = self.network.decide(frame)
            self.last_propensity = decided["propensity"].to_numpy(dtype=np.float64)
            return np.asarray(decided["price"].to_numpy(dtype=np.float64))
        return self._baseline_prices(frame)

    def offer_prices(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Personalized offers for the rows of ``frame`` (one per shopper and sku; NaN = none).

        Only the network prices offers; the baselines price skus for everyone.
        """
        if self.policy != "network" or frame.empty:
            return np.full(len(frame), np.nan)
        return np.asarray(self.network.decide(frame)["price"].to_numpy(dtype=np.float64))

    def _baseline_prices(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        gp = self.guardrails
        common = {
            "cost": frame["cost"].to_numpy(dtype=np.float64),
            "base_price": frame["base_price"].to_numpy(dtype=np.float64),
            "map_price": frame["map_price"].to_numpy(dtype=np.float64),
            "ceiling": frame["ceiling"].to_numpy(dtype=np.float64),
            "last_published": frame["last_published"].to_numpy(dtype=np.float64),
        }
        if self.policy == "static":
            return np.full(len(frame), np.nan)
        if self.policy == "competitor_match":
            cheapest = (
                frame["competitor_min_price"].to_numpy(dtype=np.float64)
                if "competitor_min_price" in frame.columns
                else np.full(len(frame), np.nan)
            )
            candidate = np.where(np.isfinite(cheapest), cheapest, common["base_price"])
            return np.asarray(apply_guardrails_vectorized(gp, candidate=candidate, model_age_s=0.0, **common).price)
        assert self.linear is not None
        x, missing = build_feature_matrix(frame)
        interval = feasible_interval(gp, **common)
        usable = interval.feasible
        lo = np.where(usable, interval.lo, 1.0)
        hi = np.where(usable, interval.hi, 1.0)
        grid = candidate_grid(lo, hi, 32)
        log_ratio = np.log(grid / common["base_price"][:, None])
        value = (grid - common["cost"][:, None]) * self.linear.demand(x, log_ratio)
        candidate = grid[np.arange(len(frame)), np.argmax(value, axis=1)]
        batch = apply_guardrails_vectorized(
            gp, candidate=candidate, model_age_s=0.0, features_missing=missing, interval=interval, **common
        )
        return np.asarray(batch.price)
