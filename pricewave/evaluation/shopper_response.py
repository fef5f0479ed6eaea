"""Has the model learned who is price-sensitive? Its offers per hidden segment, with and without the profile.

The simulator knows each shopper's segment; the model never sees it, only the shopper's profile
(:mod:`pricewave.feature_views.shopper_profile`). This check simulates a fresh, held-out market
(another seed: other shoppers, other segment draws) at explored prices, computes every shopper's
profile at the end as the job would, and asks the model for a personalized price for each
(shopper, sku) among the most viewed skus, at the market's state at that moment:

* **with the profile**: the shopper's own views, purchases and paid ratio;
* **without it**: the same rows with no history (what the model did before it had profiles);
* **the per-segment oracle**: the best price for the shopper's hidden segment.

Offers here may go above the price for everyone (no discount-only cap): the question is what the
model believes about each shopper, not what the shop allows. Reported per segment as the mean
log price ratio to the list price, and over every (shopper, sku) as the correlation of the
model's log price with the oracle's and the share of the oracle's between-segment spread the
model reproduces (the slope of model on oracle log prices, sku means removed).

Example:
    >>> from pricewave.config import load_settings                                        # doctest: +SKIP
    >>> table = shopper_response(artifact, "price_response", load_settings(), seed=1)    # doctest: +SKIP
    >>> table.loc["sensitive", "with_profile"] < table.loc["insensitive", "with_profile"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pricewave.config import Settings
from pricewave.feature_views import shopper_profile_frame
from pricewave.feature_views.shopper_profile import PROFILE_COLUMNS
from pricewave.pricing.guardrails import GuardrailPolicy
from pricewave.simulator.scenario import Scenario, load_scenario

if TYPE_CHECKING:
    from pricewave.pricing.artifact import ModelArtifact


@dataclass(frozen=True)
class ShopperResponse:
    """The check's result.

    Attributes:
        segments: Per hidden segment: ``shoppers``, ``median_views`` (history length) and the mean
            log price ratio to list ``with_profile``, ``without_profile`` and ``oracle``.
        correlation: Of the model's and the oracle's log prices over every (shopper, sku), sku
            means removed (how well the model ranks shoppers within a sku).
        spread_captured: The slope of the model's on the oracle's log prices, sku means removed:
            1 when the model moves prices between shoppers as much as the oracle does, 0 when not at all.
        spread_captured_without_profile: The same without the profile.
        rows: The (shopper, sku) pairs priced.
    """

    segments: pd.DataFrame
    correlation: float
    spread_captured: float
    spread_captured_without_profile: float
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "segments": self.segments.reset_index().to_dict("records"),
            "correlation": self.correlation,
            "spread_captured": self.spread_captured,
            "spread_captured_without_profile": self.spread_captured_without_profile,
            "rows": self.rows,
        }


def _slope(model: np.ndarray, oracle: np.ndarray) -> float:
    spread = float(np.var(oracle))
    return float(np.cov(model, oracle, bias=True)[0, 1] / spread) if spread > 0 else float("nan")


def shopper_response(
    artifact: ModelArtifact,
    scenario: Scenario | str,
    settings: Settings,
    *,
    seed: int = 1,
    events: int = 60_000,
    skus: int = 10,
    progress: bool = False,
) -> ShopperResponse:
    """Price every shopper of a held-out simulated market with and without their profile (module docstring).

    Args:
        artifact: The model to probe.
        scenario: The market.
        settings: pricewave settings.
        seed: The held-out market's seed (use another than the model's training history).
        events: Simulated events before the probe: the shoppers' history.
        skus: How many of the most viewed skus to price for each shopper.
        progress: Show a progress bar while simulating.
    """
    from pricewave.evaluation.closed_loop import RecentEvents, decision_frame, warm_up
    from pricewave.pricing.policy import offline_policy
    from pricewave.training import exploring_simulator

    scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    sim = exploring_simulator(scenario, settings, seed, explore_until_ms=None, review_texts=["(review)"])
    recent = RecentEvents()
    clicks = warm_up(sim, recent, events, progress=progress, desc="shopper history")["click_event"]
    now = sim.now_ms + 1
    market = sim.market
    segment_of = {market.user(i).user_key: market.segment_of(i) for i in range(scenario.users.n_users)}
    history = pd.DataFrame.from_records(clicks)
    profiles = shopper_profile_frame(history).groupby("user_key").tail(1).set_index("user_key")[list(PROFILE_COLUMNS)]
    viewed = history[history["event_type"] == "view"]["sku"].value_counts().index[:skus]
    sku_rows = decision_frame(sim, recent, now, {})
    sku_rows = sku_rows[sku_rows["sku"].isin(viewed)]
    shoppers = profiles.index.intersection(list(segment_of))
    rows = sku_rows.merge(pd.DataFrame({"user_key": shoppers}), how="cross")
    rows = rows.join(profiles, on="user_key")
    rows["recent_views"], rows["recent_carts"], rows["recency_s"] = 1, 0, 0.0
    rows["mean_price_seen"] = rows["base_price"]
    rows["non_personalized_price"] = rows["ceiling"]  # no discount-only cap: the model's own belief
    rows["last_published"] = np.nan
    guardrails = GuardrailPolicy(
        min_margin=scenario.pricing.min_margin,
        ceiling_multiple=scenario.pricing.ceiling_ratio,
        max_model_age_s=365 * 86_400.0,
    )
    policy = offline_policy(artifact, guardrails, 0.0)
    with_profile = policy.decide(rows)["price"].to_numpy(dtype=np.float64)
    without = policy.decide(rows.drop(columns=list(PROFILE_COLUMNS)))["price"].to_numpy(dtype=np.float64)
    contexts = {sku: market.context(sku, now) for sku in sku_rows["sku"]}
    oracle_cache: dict[tuple[str, str], float] = {}
    segments = rows["user_key"].map(segment_of)
    oracle = np.array(
        [
            oracle_cache.setdefault((segment, sku), market.oracle_price(segment, sku, contexts[sku]))
            for segment, sku in zip(segments, rows["sku"], strict=True)
        ]
    )
    base = rows["base_price"].to_numpy(dtype=np.float64)
    table = pd.DataFrame(
        {
            "segment": segments.to_numpy(),
            "sku": rows["sku"].to_numpy(),
            "views": rows["shopper_views"].to_numpy(),
            "with_profile": np.log(with_profile / base),
            "without_profile": np.log(without / base),
            "oracle": np.log(oracle / base),
        }
    )
    centred = table[["with_profile", "without_profile", "oracle"]] - table.groupby("sku")[
        ["with_profile", "without_profile", "oracle"]
    ].transform("mean")
    per_segment = table.groupby("segment").agg(
        shoppers=("views", "size"),
        median_views=("views", "median"),
        with_profile=("with_profile", "mean"),
        without_profile=("without_profile", "mean"),
        oracle=("oracle", "mean"),
    )
    per_segment["shoppers"] = per_segment["shoppers"] // max(len(sku_rows), 1)
    model, truth = centred["with_profile"].to_numpy(), centred["oracle"].to_numpy()
    return ShopperResponse(
        segments=per_segment.sort_values("oracle"),
        correlation=float(np.corrcoef(model, truth)[0, 1]) if np.std(model) > 0 else 0.0,
        spread_captured=_slope(model, truth),
        spread_captured_without_profile=_slope(centred["without_profile"].to_numpy(), truth),
        rows=len(table),
    )
