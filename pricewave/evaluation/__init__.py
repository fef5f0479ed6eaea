"""Closed-loop evaluation of pricing policies in the market simulator, and a real-data check (Ta Feng).

:func:`evaluate` runs the simulator IN PROCESS once per policy, with the same seed:

1. **Warm-up** (identical for every policy): ``warmup_events`` clean events at explored prices
   (:class:`~pricewave.training.ExplorationPriceBook`). They are also the training history of the
   pricing network (unless ``model`` is given) and of the least-squares baseline.
2. **Policy phase**: every ``interval_s`` simulated seconds each sku is re-priced from features
   computed by :mod:`pricewave.feature_views` over the recent events (the streaming job's
   windows at "now"), through the same guardrails for every policy, and the prices go into the
   simulator's price book. The static run lasts ``events`` events; the others the same number of
   intervals. Same seed ⇒ the same catalog, hidden segments, competitor price paths and purchase
   draws (common random numbers: the simulator's streams are separate, though shoppers' think
   times share a stream with arrivals, so sessions drift apart once outcomes differ).

Policies: ``static`` (list price), ``competitor_match`` (the cheapest in-stock competitor,
clamped by the guardrails), ``linear`` (least squares ``y = Xβ`` on the network's features plus
``log(p / base_price)``; the price maximizing margin on its predicted demand) and ``network``
(:meth:`~pricewave.pricing.policy.PricingPolicy.decide`, the streaming UDF's call, no exploration).

Figures per policy, over the views of the policy phase (definitions also in the report):

* ``revenue``, ``margin``: realized, from purchases; ``expected_margin``: Σ (p − cost) × P(buy)
  under the hidden model at the shown prices (no purchase noise);
* ``conversion``: purchases / views;
* ``regret``: 1 − expected margin / expected margin at the oracle's best single price per sku
  and moment (the right oracle for sku-level prices); ``regret_personalized`` uses the per-segment
  oracle price instead;
* ``price_error``: view-weighted mean of |p − p*| × κ with κ = 1 / unit cost (the deviation from
  the sku-level oracle price p* in units of the sku's cost); ``price_error_abs`` the same in currency.

Modules: :mod:`~pricewave.evaluation.policies` (the four policies), :mod:`~pricewave.evaluation.closed_loop`
(one policy's run), :mod:`~pricewave.evaluation.report` (:func:`evaluate` and its report),
:mod:`~pricewave.evaluation.ta_feng` (the real-data check) and :mod:`~pricewave.evaluation.pipeline`
(the network through the real Kafka + Flink path, against its in-process run).

Example:
    >>> from pricewave.config import load_settings                      # doctest: +SKIP
    >>> report = evaluate("small", "/tmp/eval", load_settings())         # doctest: +SKIP
    >>> report["policies"]["network"]["regret"] < report["policies"]["linear"]["regret"]  # doctest: +SKIP
    True
"""

from pricewave.evaluation.closed_loop import RunTrace, decision_frame, run_policy
from pricewave.evaluation.pipeline import add_to_report, evaluate_through_pipeline
from pricewave.evaluation.policies import POLICIES, LinearDemand
from pricewave.evaluation.report import DEFINITIONS, evaluate
from pricewave.evaluation.ta_feng import TA_FENG_DESIGN_COLUMNS, evaluate_ta_feng, fit_price_response, ta_feng_daily

__all__ = [
    "DEFINITIONS",
    "POLICIES",
    "TA_FENG_DESIGN_COLUMNS",
    "LinearDemand",
    "RunTrace",
    "add_to_report",
    "decision_frame",
    "evaluate",
    "evaluate_ta_feng",
    "evaluate_through_pipeline",
    "fit_price_response",
    "run_policy",
    "ta_feng_daily",
]
