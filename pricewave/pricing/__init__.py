"""The pure pricing core (no Flink): features, demand model, optimizer, exploration, guardrails.

One module per concept; the streaming job's pandas UDFs and the offline evaluation both call
:class:`~pricewave.pricing.policy.PricingPolicy` (or the functions below it):

* :mod:`~pricewave.pricing.features`: THE model feature spec and matrix builder;
* :mod:`~pricewave.pricing.demand_model`: P(buy | x, price), decreasing in price by construction;
* :mod:`~pricewave.pricing.optimizer`: K candidate prices per row in one batched pass;
* :mod:`~pricewave.pricing.exploration`: bounded ε-greedy exploration with logged propensity;
* :mod:`~pricewave.pricing.guardrails`: THE guardrails (scalar reference + vectorized);
* :mod:`~pricewave.pricing.explain`: a short machine-readable explanation per decision;
* :mod:`~pricewave.pricing.artifact`: versioned model artifacts and a hot-reloading watcher;
* :mod:`~pricewave.pricing.policy`: all of the above for a DataFrame of decisions.

Submodules are imported on use (``from pricewave.pricing.guardrails import ...``) so that the
guardrails stay importable without torch.
"""
