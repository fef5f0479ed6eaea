"""The market simulator: the ground truth that pricewave's prices are evaluated against.

Modules, one concept each:

* :mod:`~pricewave.simulator.scenario` — the scenario YAML model and :func:`load_scenario`.
* :mod:`~pricewave.simulator.market` — catalog, hidden segments, competitors, seasonality and the
  hidden demand model (``purchase_probability``, ``oracle_price``, ``true_elasticity``).
* :mod:`~pricewave.simulator.events` — event records, fault injection (late, out-of-order,
  duplicated, malformed) and the bytes that go on the wire.
* :mod:`~pricewave.simulator.pricebook` — the latest published prices the simulated shop shows.
* :mod:`~pricewave.simulator.runner` — :class:`Simulator`: events in memory, into Kafka, or into
  parquet history.

Example:
    >>> from pricewave.config import load_settings
    >>> from pricewave.simulator import Simulator, load_scenario
    >>> sim = Simulator(load_scenario("small"), load_settings(env={}), seed=1, review_texts=["ok"])
    >>> len(list(sim.iter_events(max_events=50)))
    50
"""

from __future__ import annotations

from pricewave.simulator.events import Emission, FaultInjector
from pricewave.simulator.market import DemandContext, Market
from pricewave.simulator.pricebook import PriceBook
from pricewave.simulator.runner import RunSummary, Simulator
from pricewave.simulator.scenario import Scenario, load_scenario, shipped_scenarios

__all__ = [
    "DemandContext",
    "Emission",
    "FaultInjector",
    "Market",
    "PriceBook",
    "RunSummary",
    "Scenario",
    "Simulator",
    "load_scenario",
    "shipped_scenarios",
]
