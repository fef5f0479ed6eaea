"""Step 1: the event history a model learns from (a simulator run that showed explored prices)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from pricewave.config import Settings
from pricewave.errors import ConfigError, DataError
from pricewave.simulator.pricebook import PriceBook, PriceSource
from pricewave.simulator.runner import ReviewTexts, Simulator, live_clock_start
from pricewave.simulator.scenario import FaultsSpec, Scenario, load_scenario, parse_scenario

HISTORY_FILES = ("click_event", "competitor_price", "review", "exposures", "catalog")


SCENARIO_FILE = "scenario.yaml"


NO_FAULTS = FaultsSpec(out_of_order_share=0, late_share=0, duplicate_share=0, malformed_share=0)


@dataclass(frozen=True)
class History:
    """A simulator history in memory (epoch-ms ``event_time`` everywhere)."""

    clicks: pd.DataFrame
    competitor_prices: pd.DataFrame
    reviews: pd.DataFrame
    exposures: pd.DataFrame
    catalog: pd.DataFrame
    scenario: Scenario | None = None
    path: Path | None = None

    @property
    def time_range(self) -> tuple[int, int]:
        """First and last view time (epoch ms)."""
        times = self.exposures["event_time"]
        return int(times.min()), int(times.max())


def load_history(path: str | Path) -> History:
    """Read a history directory written by ``Simulator.write_history`` (or :func:`generate_history`).

    Raises:
        DataError: A file is missing or the history holds no views.
    """
    root = Path(path).expanduser()
    missing = [name for name in HISTORY_FILES if not (root / f"{name}.parquet").is_file()]
    if missing:
        raise DataError(
            f"{root} is not a simulator history (missing {', '.join(f'{m}.parquet' for m in missing)}): "
            "write one with 'pricewave simulate --history-out DIR' or omit --history to generate one"
        )
    frames = {name: pd.read_parquet(root / f"{name}.parquet") for name in HISTORY_FILES}
    if frames["exposures"].empty:
        raise DataError(f"{root}/exposures.parquet holds no views: simulate longer")
    scenario = None
    if (root / SCENARIO_FILE).is_file():
        scenario = parse_scenario(yaml.safe_load((root / SCENARIO_FILE).read_text()), str(root / SCENARIO_FILE))
    return History(
        clicks=frames["click_event"],
        competitor_prices=frames["competitor_price"],
        reviews=frames["review"],
        exposures=frames["exposures"],
        catalog=frames["catalog"],
        scenario=scenario,
        path=root,
    )


class ExplorationPriceBook(PriceBook):
    """A price book that shows randomized sku prices (until ``until_ms``), for identifiable training data.

    Each sku's price is redrawn every ``interval_s`` simulated seconds, log-uniform in
    ``[low, high]`` × list price and clipped to the sku's ``bounds`` (floor, ceiling); the draw is a
    hash of (seed, sku, interval), so the same seed shows the same prices. From ``until_ms`` on it
    is an ordinary :class:`PriceBook` (published prices, else the list price).

    Args:
        bounds: sku → (floor, ceiling); skus without bounds are only clipped to be positive.
        seed: Seeds the draws.
        interval_s: How long one explored price holds.
        low, high: The explored range as multiples of the list price.
        until_ms: Explore before this simulated time only; None = always.
        offer_ttl_ms: As :class:`PriceBook`.
    """

    def __init__(
        self,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        *,
        seed: int = 0,
        interval_s: float = 300.0,
        low: float = 0.75,
        high: float = 1.35,
        until_ms: int | None = None,
        offer_ttl_ms: int | None = None,
    ) -> None:
        super().__init__(offer_ttl_ms=offer_ttl_ms)
        if not 0 < low <= high:
            raise ConfigError("exploration range needs 0 < low <= high")
        self.bounds = dict(bounds or {})
        self.seed = seed
        self.interval_ms = max(1, int(interval_s * 1000))
        self.low, self.high = low, high
        self.until_ms = until_ms

    def explored_price(self, sku: str, list_price: float, now_ms: int) -> float:
        """The explored price of ``sku`` at ``now_ms``."""
        digest = hashlib.sha256(f"{self.seed}:{sku}:{now_ms // self.interval_ms}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        price = list_price * math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        floor, ceiling = self.bounds.get(sku, (0.01, math.inf))
        return round(min(max(price, floor), ceiling), 2)

    def price_for(self, user_key: str, sku: str, list_price: float, now_ms: int) -> tuple[float, PriceSource]:
        """The explored price before ``until_ms``, else what a :class:`PriceBook` shows."""
        if self.until_ms is None or now_ms < self.until_ms:
            return self.explored_price(sku, list_price, now_ms), "sku"
        return super().price_for(user_key, sku, list_price, now_ms)


def exploring_simulator(
    scenario: Scenario | str | Path,
    settings: Settings,
    seed: int,
    *,
    explore_until_ms: int | None = None,
    review_texts: ReviewTexts | Sequence[str] | None = None,
    clock_start_ms: int | None = None,
) -> Simulator:
    """A fault-free simulator whose shop shows explored prices (until ``explore_until_ms``)."""
    scenario = load_scenario(scenario) if not isinstance(scenario, Scenario) else scenario
    book = ExplorationPriceBook(
        seed=seed, until_ms=explore_until_ms, offer_ttl_ms=int(scenario.pricing.offer_ttl_s * 1000)
    )
    sim = Simulator(
        scenario,
        settings,
        seed=seed,
        faults=NO_FAULTS,
        pricebook=book,
        review_texts=review_texts,
        clock_start_ms=clock_start_ms,
    )
    book.bounds = {sku.sku: (sku.floor, sku.ceiling) for sku in sim.market.skus.values()}
    return sim


def generate_history(
    scenario: Scenario | str | Path,
    settings: Settings,
    out_dir: str | Path,
    *,
    events: int,
    seed: int = 0,
    progress: bool = True,
    review_texts: ReviewTexts | Sequence[str] | None = None,
    ending_now: bool = False,
) -> Path:
    """Simulate ``events`` clean events at explored prices into a history directory.

    Besides the files of ``Simulator.write_history`` it writes ``scenario.yaml`` (for holidays).

    Args:
        ending_now: Date the history so it ends about now instead of at the scenario's
            ``clock.start``: its time-of-day and weekday features are then those a live market
            (``pricewave simulate`` on the live clock) shows the model right after training.
    """
    clock_start_ms = None
    if ending_now:
        # How much simulated time the events take, from a quick pass of the same market.
        probe = Simulator(scenario, settings, seed=seed, faults=NO_FAULTS, review_texts=["-"], track_oracle=False)
        for _ in probe.iter_events(max_events=events):
            pass
        clock_start_ms = live_clock_start() - (probe.now_ms - probe.market.start_ms)
    sim = exploring_simulator(scenario, settings, seed, review_texts=review_texts, clock_start_ms=clock_start_ms)
    out = Path(out_dir)
    sim.write_history(out, n_events=events, progress=progress)
    (out / SCENARIO_FILE).write_text(yaml.safe_dump(sim.scenario.model_dump(mode="json"), sort_keys=False))
    return out
