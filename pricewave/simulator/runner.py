"""The simulator: sessions, competitor observations and reviews on a simulated clock.

:class:`Simulator` runs a discrete-event simulation of one scenario. Users arrive in sessions
(Poisson, scaled by seasonality), search and view skus at the price the :class:`PriceBook`
gives (the fresh personalized offer, else the sku price, else the list price), and buy by the
hidden demand model: revenue depends on our prices (the closed loop). Competitors' prices
drift, promote and run out; buyers sometimes review.

Three outputs:

* :meth:`Simulator.iter_events` — the wire messages (:class:`Emission`), faults included.
  Deterministic for a seed as long as nothing changes the price book meanwhile.
* :meth:`Simulator.run_to_kafka` — produce them at a paced rate; with ``closed_loop`` a
  background consumer feeds the price book from the prices topic (read_committed).
* :meth:`Simulator.write_history` — clean events, shown prices and outcomes, as parquet.

Example:
    >>> from pricewave.config import load_settings
    >>> from pricewave.simulator.scenario import load_scenario
    >>> sim = Simulator(load_scenario("small"), load_settings(env={}), seed=7, review_texts=["fine"])
    >>> messages = list(sim.iter_events(max_events=2000))
    >>> len(messages), sim.summary.messages
    (2000, 2000)
    >>> sorted(sim.summary.source_events)
    ['click_event', 'competitor_price', 'review']
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import random
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pricewave.config import Settings
from pricewave.errors import ConfigError, StackError
from pricewave.simulator.events import EVENT_NAMES, Emission, EventName, FaultInjector, event_id
from pricewave.simulator.market import CHANNELS, HOUR_MS, DemandContext, Market, User
from pricewave.simulator.pricebook import PriceBook
from pricewave.simulator.scenario import FaultsSpec, Scenario, load_scenario

MAX_PRICE = 1_000_000.0
MAX_REVIEW_CHARS = 20_000
_SEARCH_WORDS = ("best", "cheap", "organic", "gift", "deal", "premium", "new")

# Heap entry kinds, in tie-break order at equal times.
_REPLENISH, _COMPETITOR, _REVIEW, _ARRIVAL, _STEP = range(5)
_NEVER_MS = 100 * 365 * 24 * 3_600_000  # a gap this long is past the end of any run


@dataclass(frozen=True)
class ReviewTexts:
    """Review texts to draw from: 'great' ones for good ratings, 'other' ones otherwise."""

    great: Sequence[str]
    other: Sequence[str]

    @classmethod
    def from_dataset(cls) -> ReviewTexts:
        """The 4,000 real Amazon Fine Foods reviews of :func:`pricewave.data.datasets.load_reviews`."""
        from pricewave.data.datasets import load_reviews

        frame = load_reviews()
        return cls(
            great=frame.loc[frame["label"] == 1, "text"].tolist(),
            other=frame.loc[frame["label"] == 0, "text"].tolist(),
        )


@dataclass
class RunSummary:
    """What a run produced. Market figures count source events, however they reached the wire."""

    messages: int = 0
    source_events: Counter[str] = field(default_factory=Counter)
    event_types: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    late: int = 0
    out_of_order: int = 0
    malformed: int = 0
    malformed_kinds: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    views: int = 0
    stockout_views: int = 0
    purchases: int = 0
    units: int = 0
    revenue: float = 0.0
    margin: float = 0.0
    expected_margin: float = 0.0
    oracle_margin: float = 0.0
    sku_oracle_margin: float = 0.0
    price_sources: Counter[str] = field(default_factory=Counter)
    prices_received: int = 0
    delivery_errors: int = 0
    heartbeats: int = 0
    elapsed_s: float = 0.0
    sim_start_ms: int = 0
    sim_end_ms: int = 0

    @property
    def events_per_s(self) -> float:
        """Messages per wall-clock second."""
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def conversion(self) -> float:
        """Purchases per view."""
        return self.purchases / self.views if self.views else 0.0

    @property
    def regret(self) -> float:
        """1 − expected margin at the shown prices / at the personalized (per-segment) oracle prices."""
        return 1.0 - self.expected_margin / self.oracle_margin if self.oracle_margin > 0 else 0.0

    @property
    def sku_regret(self) -> float:
        """1 − expected margin at the shown prices / at the best single price per sku (population mix)."""
        return 1.0 - self.expected_margin / self.sku_oracle_margin if self.sku_oracle_margin > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, derived figures included."""
        data: dict[str, Any] = {}
        for name, value in vars(self).items():
            data[name] = dict(sorted(value.items())) if isinstance(value, Counter) else value
        data.update(
            events_per_s=self.events_per_s, conversion=self.conversion, regret=self.regret, sku_regret=self.sku_regret
        )
        money = ("revenue", "margin", "expected_margin", "oracle_margin", "sku_oracle_margin")
        for name in (*money, "events_per_s", "elapsed_s"):
            data[name] = round(data[name], 4)
        for name in ("conversion", "regret", "sku_regret"):
            data[name] = round(data[name], 6)
        return data


@dataclass(slots=True)
class _Session:
    index: int
    user: User
    session_id: str
    channel: str
    views_left: int
    category: str | None
    pending: deque[dict[str, Any]]


class _TokenBucket:
    """Paces a loop to ``rate`` per second, sleeping in slices of at least ~5 ms."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * 0.05)
        self.min_wait_tokens = max(1.0, rate * 0.005)
        self.tokens = 1.0
        self.last = time.monotonic()

    def acquire(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            time.sleep((self.min_wait_tokens - self.tokens) / self.rate)
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        self.tokens -= 1.0


def live_clock_start(now_s: float | None = None) -> int:
    """The simulated clock's start for a live run: the wall clock now, in epoch milliseconds.

    A market streamed into a live pipeline must run on the wall clock: channels, the monitor and
    the online store's freshness rule judge every price by its age against now, and a clock in the
    past makes every stored value stale (DESIGN §8).

    Example:
        >>> live_clock_start(1_800_000_000.25)
        1800000000250
    """
    return int((time.time() if now_s is None else now_s) * 1000)


class Simulator:
    """A seeded market simulation of one scenario.

    Args:
        scenario: A :class:`Scenario`, a shipped scenario name or a YAML path.
        settings: pricewave settings (topics, broker, user-key secret).
        seed: Seeds everything random: same seed and prices, same events.
        faults: Overrides ``scenario.faults`` (shares of late, out-of-order, duplicated, malformed).
        pricebook: The prices to show; default an empty book (list prices) with the scenario's offer TTL.
        review_texts: Texts for reviews: a :class:`ReviewTexts`, a plain list used for every rating,
            or None for the real Amazon Fine Foods reviews (:func:`pricewave.data.datasets.load_reviews`).
        run_id: Goes into every id (default: a hash of scenario name and seed).
        track_oracle: Also sum the oracle's expected margin per view (for ``summary.regret``).
        clock_start_ms: Start the simulated clock here (epoch ms) instead of the scenario's
            ``clock.start``: :func:`live_clock_start` for a market that streams into a live pipeline,
            whose readers judge freshness by the wall clock.
    """

    def __init__(
        self,
        scenario: Scenario | str | Path,
        settings: Settings,
        seed: int = 0,
        *,
        faults: FaultsSpec | None = None,
        pricebook: PriceBook | None = None,
        review_texts: ReviewTexts | Sequence[str] | None = None,
        run_id: str | None = None,
        track_oracle: bool = True,
        clock_start_ms: int | None = None,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        if clock_start_ms is not None:
            clock_start = datetime.fromtimestamp(clock_start_ms / 1000, tz=UTC)
            clock = self.scenario.clock.model_copy(update={"start": clock_start})
            self.scenario = self.scenario.model_copy(update={"clock": clock})
        self.settings = settings
        self.seed = seed
        self.faults = faults if faults is not None else self.scenario.faults
        self.market = Market(self.scenario, seed, settings.user_key_secret)
        offer_ttl_ms = int(self.scenario.pricing.offer_ttl_s * 1000)
        self.pricebook = pricebook if pricebook is not None else PriceBook(offer_ttl_ms=offer_ttl_ms)
        if review_texts is None or isinstance(review_texts, ReviewTexts):
            self._review_texts = review_texts
        else:
            self._review_texts = ReviewTexts(great=list(review_texts), other=list(review_texts))
        digest = hashlib.sha256(f"{self.scenario.name}:{seed}".encode()).hexdigest()[:10]
        self.run_id = (run_id or digest)[:40]
        self.track_oracle = track_oracle
        streams = random.Random(f"simulator:{self.scenario.name}:{seed}")
        self._rng_arrivals = random.Random(streams.getrandbits(64))
        self._rng_funnel = random.Random(streams.getrandbits(64))
        self._rng_competitors = random.Random(streams.getrandbits(64))
        self._rng_reviews = random.Random(streams.getrandbits(64))
        self.injector = FaultInjector(self.faults, random.Random(streams.getrandbits(64)))
        self.summary = RunSummary(sim_start_ms=self.market.start_ms, sim_end_ms=self.market.start_ms)
        self.now_ms = self.market.start_ms
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = itertools.count()
        self._counters: Counter[str] = Counter()
        self._exposures: list[dict[str, Any]] | None = None
        self._oracle_cache: dict[tuple[str | None, str, float, float | None], float] = {}
        users = self.scenario.users
        self._funnel = users.funnel
        funnel = users.funnel
        self._mean_quantity = 1.0 if funnel.max_quantity == 1 else 0.8 + 0.2 * (2 + funnel.max_quantity) / 2
        self._categories = list(self.market.by_category)
        start = self.market.start_ms
        self._push(start + self._exp_ms(self._rng_arrivals, self._arrival_rate_per_ms(start)), _ARRIVAL, None)
        rate = self.scenario.competitors.updates_per_hour / HOUR_MS
        # A rate below the smallest float per millisecond (5e-324 per hour) is none: never an update.
        if self.market.competitor_offers and rate > 0:
            self._push(start + self._exp_ms(self._rng_competitors, rate), _COMPETITOR, None)
        self._push(start + int(self.scenario.catalog.replenish_interval_h * HOUR_MS), _REPLENISH, None)

    # -- scheduling ---------------------------------------------------------------------------

    def _push(self, t_ms: int, kind: int, payload: Any) -> None:
        heapq.heappush(self._heap, (t_ms, kind, next(self._seq), payload))

    @staticmethod
    def _exp_ms(rng: random.Random, rate_per_ms: float) -> int:
        # A rate so small its gap overflows (e.g. 1e-311 updates/hour) means "never": a century.
        return max(1, int(min(rng.expovariate(rate_per_ms), _NEVER_MS)))

    def _arrival_rate_per_ms(self, t_ms: int) -> float:
        return self.scenario.users.sessions_per_hour * self.market.traffic_multiplier(t_ms) / HOUR_MS

    def _next_id(self, prefix: str) -> str:
        self._counters[prefix] += 1
        return event_id(prefix, self.run_id, self._counters[prefix])

    # -- the simulation -----------------------------------------------------------------------

    def _records(self, until_ms: int | None = None) -> Iterator[tuple[EventName, dict[str, Any]]]:
        """Clean records in simulated-time order, forever or until ``until_ms``."""
        while self._heap:
            t_ms, kind, _, payload = self._heap[0]
            if until_ms is not None and t_ms > until_ms:
                return
            heapq.heappop(self._heap)
            self.now_ms = t_ms
            self.summary.sim_end_ms = t_ms
            if kind == _STEP:
                record = self._session_step(payload, t_ms)
                if record is not None:
                    yield "click_event", record
            elif kind == _ARRIVAL:
                self._push(t_ms + self._exp_ms(self._rng_arrivals, self._arrival_rate_per_ms(t_ms)), _ARRIVAL, None)
                record = self._session_start(t_ms)
                if record is not None:
                    yield "click_event", record
            elif kind == _COMPETITOR:
                rate = self.scenario.competitors.updates_per_hour / HOUR_MS
                self._push(t_ms + self._exp_ms(self._rng_competitors, rate), _COMPETITOR, None)
                yield "competitor_price", self._competitor_record(t_ms)
            elif kind == _REVIEW:
                yield "review", {**payload, "event_time": t_ms}
            else:  # _REPLENISH
                self.market.replenish()
                self._push(t_ms + int(self.scenario.catalog.replenish_interval_h * HOUR_MS), _REPLENISH, None)

    def _shown_price(self, session: _Session, sku: str, t_ms: int) -> tuple[float, str]:
        price, source = self.pricebook.price_for(session.user.user_key, sku, self.market.skus[sku].list_price, t_ms)
        return min(MAX_PRICE, max(0.01, round(price, 2))), source

    def _click_record(
        self, session: _Session, event_type: str, sku: str, price: float, t_ms: int, **extra: Any
    ) -> dict[str, Any]:
        record = {
            "event_id": self._next_id("c"),
            "event_type": event_type,
            "user_key": session.user.user_key,
            "session_id": session.session_id,
            "sku": sku,
            "price_seen": price,
            "channel": session.channel,
            "event_time": t_ms,
        }
        record.update(extra)
        return record

    def _session_start(self, t_ms: int) -> dict[str, Any] | None:
        rng = self._rng_arrivals
        index = rng.randrange(self.scenario.users.n_users)
        segment = self.market.segments[self.market.segment_of(index)]
        channel = rng.choices(CHANNELS, weights=segment.channel_weights)[0]
        mean_views = segment.views_per_session
        extra_views = 0 if mean_views <= 1 else int(rng.expovariate(1.0 / (mean_views - 1.0)))
        searches = rng.random() < segment.search_share
        category = self.market.skus[self.market.pick_sku(rng.random())].category if searches else None
        self._counters["s"] += 1
        session = _Session(
            index=index,
            user=self.market.user(index),
            session_id=event_id("s", self.run_id, self._counters["s"]),
            channel=channel,
            views_left=1 + extra_views,
            category=category,
            pending=deque(),
        )
        self.summary.sessions += 1
        if category is None:
            return self._session_step(session, t_ms)
        top = self.market.pick_sku(rng.random(), category)
        price, _ = self._shown_price(session, top, t_ms)
        query = f"{category} {rng.choice(_SEARCH_WORDS)}"
        self._push(t_ms + self._think_ms(), _STEP, session)
        return self._click_record(session, "search", top, price, t_ms, query=query)

    def _think_ms(self) -> int:
        return max(1, int(self._rng_arrivals.expovariate(1.0 / (self.scenario.users.think_time_s * 1000.0))))

    def _session_step(self, session: _Session, t_ms: int) -> dict[str, Any] | None:
        if session.pending:
            step = session.pending.popleft()
            record = self._click_record(session, step["event_type"], step["sku"], step["price"], t_ms)
            if "quantity" in step:
                record["quantity"] = step["quantity"]
            if step["event_type"] == "purchase":
                cost = self.market.skus[step["sku"]].cost
                self.summary.purchases += 1
                self.summary.units += step["quantity"]
                self.summary.revenue += step["price"] * step["quantity"]
                self.summary.margin += (step["price"] - cost) * step["quantity"]
        elif session.views_left > 0:
            session.views_left -= 1
            record = self._view(session, t_ms)
        else:
            return None
        self._push(t_ms + self._think_ms(), _STEP, session)
        return record

    def _view(self, session: _Session, t_ms: int) -> dict[str, Any]:
        market = self.market
        sku = market.pick_sku(self._rng_arrivals.random(), session.category)
        price, source = self._shown_price(session, sku, t_ms)
        segment = session.user.segment
        context = market.context(sku, t_ms)
        probability = market.purchase_probability(segment, sku, price, context)
        funnel = self._funnel
        u, r_quantity, r_size = self._rng_funnel.random(), self._rng_funnel.random(), self._rng_funnel.random()
        quantity = 1 if r_quantity < 0.8 or funnel.max_quantity == 1 else 2 + int(r_size * (funnel.max_quantity - 1))
        in_stock = market.stock[sku] > 0
        cart_p = min(1.0, funnel.cart_multiple * probability)
        click_p = max(cart_p, min(1.0, funnel.click_floor + funnel.click_multiple * probability))
        purchased = in_stock and u < probability
        carted = in_stock and u < cart_p
        clicked = u < click_p
        if purchased:
            quantity = market.take_stock(sku, quantity)
            self._maybe_review(session, sku, t_ms)
        summary = self.summary
        summary.views += 1
        summary.price_sources[source] += 1
        if in_stock:
            cost = market.skus[sku].cost
            summary.expected_margin += (price - cost) * probability * self._mean_quantity
            if self.track_oracle:
                personal, population = self._oracle_values(segment, sku, context)
                summary.oracle_margin += personal * self._mean_quantity
                summary.sku_oracle_margin += population * self._mean_quantity
        else:
            summary.stockout_views += 1
        if clicked:
            session.pending.append({"event_type": "click", "sku": sku, "price": price})
        if carted:
            session.pending.append({"event_type": "add_to_cart", "sku": sku, "price": price, "quantity": quantity})
        if purchased:
            session.pending.append({"event_type": "purchase", "sku": sku, "price": price, "quantity": quantity})
        if self._exposures is not None:
            self._exposures.append(
                {
                    "event_time": t_ms,
                    "session_id": session.session_id,
                    "user_key": session.user.user_key,
                    "sku": sku,
                    "channel": session.channel,
                    "price_shown": price,
                    "price_source": source,
                    "list_price": market.skus[sku].list_price,
                    "competitor_price": context.competitor_price,
                    "in_stock": in_stock,
                    "clicked": clicked,
                    "carted": carted,
                    "purchased": purchased,
                    "quantity": quantity if purchased else 0,
                }
            )
        return self._click_record(session, "view", sku, price, t_ms)

    def _oracle_values(self, segment: str, sku: str, context: DemandContext) -> tuple[float, float]:
        """Expected margin of this view at the segment's oracle price and at the sku-level oracle price."""
        market = self.market
        season = round(context.season_logit, 2)
        context = DemandContext(season, context.competitor_price)  # the cache key is the context used
        prices = []
        for who in (segment, None):
            key = (who, sku, season, context.competitor_price)
            best = self._oracle_cache.get(key)
            if best is None:
                if len(self._oracle_cache) > 200_000:
                    self._oracle_cache.clear()
                best = market.oracle_price(who, sku, context)
                self._oracle_cache[key] = best
            prices.append(best)
        return (
            market.expected_value(segment, sku, prices[0], context),
            market.expected_value(segment, sku, prices[1], context),
        )

    def _maybe_review(self, session: _Session, sku: str, t_ms: int) -> None:
        spec = self.scenario.reviews
        rng = self._rng_reviews
        if rng.random() >= spec.probability_per_purchase:
            return
        quality = self.market.skus[sku].quality
        rating = int(min(5, max(1, round(1 + 4 * quality + rng.gauss(0.0, spec.rating_noise)))))
        texts = self._texts()
        great = rng.random() < 0.1 + 0.8 * (rating - 1) / 4
        pool = texts.great if great and texts.great else texts.other or texts.great
        text = pool[rng.randrange(len(pool))][:MAX_REVIEW_CHARS] if pool else ""
        delay_ms = 3 * self.scenario.users.think_time_s * 1000 + (
            rng.expovariate(1.0 / (spec.delay_h_mean * HOUR_MS)) if spec.delay_h_mean > 0 else 0.0
        )
        record = {
            "review_id": self._next_id("r"),
            "sku": sku,
            "rating": rating,
            "text": text,
            "user_key": session.user.user_key,
        }
        self._push(t_ms + int(delay_ms), _REVIEW, record)

    def _texts(self) -> ReviewTexts:
        if self._review_texts is None:
            self._review_texts = ReviewTexts.from_dataset()
        return self._review_texts

    def _competitor_record(self, t_ms: int) -> dict[str, Any]:
        offer = self.market.observe_competitor(self._rng_competitors, t_ms)
        assert offer is not None  # only scheduled when there are competitor offers
        return {
            "event_id": self._next_id("p"),
            "sku": offer.sku,
            "competitor": offer.competitor,
            "price": min(MAX_PRICE, offer.price(t_ms)),
            "in_stock": offer.in_stock(t_ms),
            "event_time": t_ms,
        }

    def _count(self, name: EventName, record: dict[str, Any]) -> None:
        self.summary.source_events[name] += 1
        if name == "click_event":
            self.summary.event_types[record["event_type"]] += 1

    # -- outputs ------------------------------------------------------------------------------

    def iter_events(self, max_events: int | None = None, duration_s: float | None = None) -> Iterator[Emission]:
        """Wire messages in send order, faults applied; continues where the last call stopped.

        Args:
            max_events: Stop after this many messages (duplicates and malformed included).
            duration_s: Stop after this many simulated seconds from the current clock.
        """
        until = None if duration_s is None else self.now_ms + int(duration_s * 1000)
        produced = 0
        summary = self.summary
        for name, record in self._records(until):
            self._count(name, record)
            for emission in self.injector.apply(name, record, self.now_ms):
                if max_events is not None and produced >= max_events:
                    return
                produced += 1
                summary.messages += 1
                if emission.duplicate:
                    summary.duplicates += 1
                elif emission.malformed is not None:
                    summary.malformed += 1
                    summary.malformed_kinds[emission.malformed] += 1
                elif emission.timing == "late":
                    summary.late += 1
                elif emission.timing == "out_of_order":
                    summary.out_of_order += 1
                yield emission
            if max_events is not None and produced >= max_events:
                return

    def topic_for(self, name: EventName) -> str:
        """The topic an event goes to (from ``settings.topics``)."""
        topics = self.settings.topics
        return {"click_event": topics.clicks, "competitor_price": topics.competitor_prices, "review": topics.reviews}[
            name
        ]

    def run_to_kafka(
        self,
        rate: float | None = 1000.0,
        duration_s: float | None = None,
        max_events: int | None = None,
        closed_loop: bool = True,
        *,
        progress: bool = True,
        speedup: float | None = None,
        heartbeat_s: float | None = None,
    ) -> RunSummary:
        """Produce events into Kafka at ``rate`` messages/s until ``duration_s`` or ``max_events``.

        Messages are keyed by sku; clicks, competitor prices and reviews go to their topics in
        ``settings.topics`` (malformed ones too, as raw bytes). With ``closed_loop`` the price book
        follows ``settings.topics.prices`` (read_committed) while producing. Without a limit it
        runs until interrupted (Ctrl-C), then flushes and returns.

        Args:
            rate: Messages per wall-clock second (token-bucket paced); None or 0: as fast as possible.
            duration_s: Wall-clock seconds to run.
            max_events: Messages to send.
            closed_loop: Show the prices the pipeline publishes.
            progress: Show a tqdm progress bar.
            speedup: Pace by the simulated clock instead: each event is sent when the wall clock
                reaches its simulated time, the simulated clock running ``speedup`` times faster
                than the wall clock (1.0: live, with :func:`live_clock_start`). ``rate`` then caps
                the messages per second (None or 0: no cap).
            heartbeat_s: Every ``heartbeat_s`` simulated seconds, a heartbeat (``schemas/heartbeat``,
                :func:`pricewave.kafka_io.send_heartbeats`) at the simulated clock to every
                partition of the competitor-price and review topics, whose few records would
                otherwise hold the job's windows back; not counted in ``messages``. None: none.

        Returns:
            The run summary (also in ``self.summary``).

        Raises:
            StackError: The broker is unreachable or rejected messages.
        """
        from kafka.errors import KafkaError

        from pricewave.kafka_io import make_producer, send_heartbeats

        if rate is not None and rate < 0:
            raise ConfigError(f"rate must be positive (messages per second), got {rate}")
        if speedup is not None and not speedup > 0:
            raise ConfigError(f"speedup must be > 0, got {speedup}")
        if heartbeat_s is not None and not heartbeat_s > 0:
            raise ConfigError(f"heartbeat interval must be > 0 s, got {heartbeat_s}")
        if closed_loop:
            self.pricebook.start_consumer(self.settings)
        producer = make_producer(self.settings)
        bucket = _TokenBucket(rate) if rate else None
        topics = {name: self.topic_for(name) for name in EVENT_NAMES}
        failures: list[BaseException] = []
        started = time.monotonic()
        sim_started_ms = self.now_ms
        sent_before = self.summary.messages
        bar = tqdm(total=max_events, unit="msg", disable=not progress, mininterval=0.5, desc="simulate")
        pending_bar = 0
        sent = 0
        sparse_topics = (self.settings.topics.competitor_prices, self.settings.topics.reviews)
        next_heartbeat_ms = self.now_ms
        try:
            for emission in self.iter_events(max_events=max_events):
                if speedup is not None:
                    # Wait for the wall clock to reach this event's simulated time.
                    due = started + (self.now_ms - sim_started_ms) / 1000 / speedup
                    wait = due - time.monotonic()
                    if duration_s is not None:
                        wait = min(wait, started + duration_s - time.monotonic())
                    if wait > 0:
                        time.sleep(wait)
                    if duration_s is not None and time.monotonic() - started >= duration_s:
                        break
                if bucket is not None:
                    bucket.acquire()
                future = producer.send(topics[emission.name], value=emission.value, key=emission.key)
                future.add_errback(failures.append)
                sent += 1
                if heartbeat_s is not None and self.now_ms >= next_heartbeat_ms:
                    # After the event at now_ms: nothing the simulator sends later is older than it
                    # by more than its out-of-order fault's shift.
                    for topic in sparse_topics:
                        self.summary.heartbeats += send_heartbeats(producer, topic, self.now_ms, "simulator")
                    next_heartbeat_ms = self.now_ms + int(heartbeat_s * 1000)
                pending_bar += 1
                if pending_bar >= 256:
                    bar.update(pending_bar)
                    pending_bar = 0
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    break
        except KeyboardInterrupt:
            pass
        except KafkaError as exc:
            raise StackError(f"producing to {self.settings.kafka.bootstrap_servers} failed: {exc}") from None
        finally:
            bar.update(pending_bar)
            bar.close()
            try:
                producer.flush(timeout=30)
            finally:
                producer.close()
                if closed_loop:
                    self.pricebook.stop()
        # iter_events counts a message when it makes it; the one made when the duration ran out
        # was never sent, and a reader that waits for `messages` records would wait in vain.
        self.summary.messages = sent_before + sent
        self.summary.elapsed_s = time.monotonic() - started
        self.summary.prices_received = self.pricebook.received
        self.summary.delivery_errors += len(failures)
        if failures and len(failures) == self.summary.messages - sent_before:
            raise StackError(f"Kafka rejected every message (first error: {failures[0]})")
        return self.summary

    def write_history(
        self,
        out_dir: str | Path,
        n_events: int | None = None,
        duration_s: float | None = None,
        *,
        progress: bool = True,
    ) -> dict[str, Path]:
        """Write clean history (no transport faults) as parquet, for training.

        Files: ``click_event.parquet``, ``competitor_price.parquet``, ``review.parquet`` (the
        event records), ``exposures.parquet`` (one row per view: price shown, its source and the
        outcome: clicked, carted, purchased, quantity), ``catalog.parquet`` (the public catalog in
        the ``sku_catalog`` schema) and ``summary.json``.

        Args:
            out_dir: Directory to write into (created).
            n_events: Stop after this many events.
            duration_s: Stop after this many simulated seconds.

        Returns:
            Name → path of every file written.
        """
        import pandas as pd

        if n_events is None and duration_s is None:
            raise ConfigError("write_history needs n_events or duration_s (simulated seconds)")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in EVENT_NAMES}
        self._exposures = []
        until = None if duration_s is None else self.now_ms + int(duration_s * 1000)
        started = time.monotonic()
        try:
            with tqdm(total=n_events, unit="ev", disable=not progress, mininterval=0.5, desc="history") as bar:
                for count, (name, record) in enumerate(self._records(until), start=1):
                    self._count(name, record)
                    rows[name].append(record)
                    if count % 1024 == 0:
                        bar.update(1024)
                    if n_events is not None and count >= n_events:
                        break
            exposures = self._exposures
        finally:
            self._exposures = None
        self.summary.elapsed_s += time.monotonic() - started
        paths: dict[str, Path] = {}
        for event_name, records in rows.items():
            paths[event_name] = out / f"{event_name}.parquet"
            _frame(records, event_name).to_parquet(paths[event_name], index=False)
        paths["exposures"] = out / "exposures.parquet"
        pd.DataFrame(exposures).to_parquet(paths["exposures"], index=False)
        paths["catalog"] = out / "catalog.parquet"
        pd.DataFrame(self.catalog_records()).to_parquet(paths["catalog"], index=False)
        paths["summary"] = out / "summary.json"
        paths["summary"].write_text(json.dumps(self.summary.to_dict(), indent=2) + "\n")
        return paths

    def catalog_records(self) -> list[dict[str, Any]]:
        """The public catalog as ``sku_catalog`` records (valid at the simulation start)."""
        return [
            {
                "sku": sku.sku,
                "base_price": sku.list_price,
                "cost": sku.cost,
                "map_price": sku.map_price or None,
                "ceiling_price": sku.ceiling,
                "category": sku.category,
                "event_time": self.market.start_ms,
            }
            for sku in self.market.skus.values()
        ]


def _frame(records: list[dict[str, Any]], name: str) -> Any:
    """A DataFrame of records with every schema column present (optional ones may be all-null)."""
    import pandas as pd

    from pricewave.schemas import load_schema

    schema = load_schema(name)
    frame = pd.DataFrame.from_records(records, columns=schema.field_names)
    for spec in schema.fields:
        if spec.json_type == "integer" and not spec.is_array:
            frame[spec.name] = frame[spec.name].astype("Int64")  # nullable: optional fields stay integers
    return frame
