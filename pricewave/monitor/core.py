"""The monitor: a Kafka feed into a :class:`StreamTally` plus periodic polls of Flink, Kafka and the store.

:class:`Monitor` runs two daemon threads: one consumes the prices, dead-letter and competitor-price
topics (committed records only) into the tally, one polls the pipeline's health every
``refresh_s``. :meth:`Monitor.snapshot` is the JSON the dashboard, its server-sent events and the
Prometheus endpoint are made from.

Example:
    >>> from pricewave.config import load_settings
    >>> monitor = Monitor(load_settings(env={}), group_id="pricewave-pricing")
    >>> sorted(monitor.snapshot())[:4]
    ['counts', 'dead_letters', 'feed', 'flink']
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from typing import Any

from pricewave.config import Settings
from pricewave.monitor.sources import FeatureFreshness, FlinkHealth, KafkaOffsets
from pricewave.monitor.tally import StreamTally


class Monitor:
    """Everything the dashboard shows, kept up to date by background threads.

    Args:
        settings: Topics, broker and Flink addresses.
        group_id: The pricing job's consumer group (its committed offsets give the lag).
        job_id: A Flink job to follow (default: the newest active pricing job).
        backfill: Records per partition read back at start (None: the whole topics).
        refresh_s: Seconds between polls of Flink, offsets (and between server-sent events).
        freshness_every_s: Seconds between online-store freshness reads (slower: opens Feast).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str = "pricewave-pricing",
        job_id: str | None = None,
        backfill: int | None = 1000,
        refresh_s: float = 2.0,
        freshness_every_s: float = 15.0,
        history_len: int = 900,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.backfill = backfill
        self.refresh_s = refresh_s
        self.freshness_every_s = freshness_every_s
        self.tally = StreamTally(settings.topics)
        self.flink = FlinkHealth(settings.flink.rest_url, job_id)
        self.offsets = KafkaOffsets(settings, group_id)
        self.freshness_source = FeatureFreshness(settings)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.updated = threading.Condition()
        self.version = 0
        self.feed_state: dict[str, Any] = {"available": False, "error": "starting", "records": 0}
        self.health: dict[str, Any] = {
            "flink": {"available": False, "error": "starting"},
            "kafka": {"available": False, "error": "starting", "topics": []},
        }
        self.freshness: dict[str, Any] = {"available": False, "reason": "unavailable: not read yet", "views": []}
        # one point per poll: the timeline chart
        self.history: deque[dict[str, Any]] = deque(maxlen=history_len)
        self._threads: list[threading.Thread] = []
        # The next offset to fold per partition: a feed that reconnects (broker restart) goes on
        # from there instead of reading the backfill again, which would count its records twice.
        self._next_offsets: dict[Any, int] = {}

    # -- threads ------------------------------------------------------------------------------

    def start(self) -> Monitor:
        """Start the feed and poll threads (idempotent)."""
        if not self._threads:
            for target, name in ((self._feed, "monitor-feed"), (self._poll, "monitor-poll")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the threads and close the clients."""
        self.stopped.set()
        with self.updated:
            self.updated.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        self.offsets.close()

    def _assign(self, consumer: Any, assigned: set[Any]) -> set[Any]:
        from kafka import TopicPartition

        topics = self.settings.topics
        wanted = {
            TopicPartition(name, partition)
            for name in (topics.prices, topics.dlq, topics.competitor_prices)
            for partition in (consumer.partitions_for_topic(name) or [])
        }
        if wanted == assigned:
            return assigned
        consumer.assign(sorted(wanted))
        new = sorted(wanted - assigned)
        fresh = [tp for tp in new if tp not in self._next_offsets]
        for tp in new:
            if tp in self._next_offsets:  # read before this consumer: go on where the last one stopped
                consumer.seek(tp, self._next_offsets[tp])
        if fresh:
            consumer.seek_to_beginning(*fresh)
            if self.backfill is not None:
                ends = consumer.end_offsets(fresh)
                for tp in fresh:
                    start = consumer.beginning_offsets([tp])[tp]
                    consumer.seek(tp, max(start, int(ends[tp]) - self.backfill))
        return wanted

    def _feed(self) -> None:
        from pricewave.kafka_io import make_consumer

        consumer = None
        assigned: set[Any] = set()
        last_assign = 0.0
        while not self.stopped.is_set():
            try:
                if consumer is None:
                    consumer = make_consumer(self.settings, [], read_committed=True, client_id="pricewave-monitor")
                    assigned = set()
                if time.monotonic() - last_assign > max(self.refresh_s, 1.0):
                    assigned = self._assign(consumer, assigned)
                    last_assign = time.monotonic()
                if not assigned:
                    self.feed_state = {"available": True, "error": "no topics yet", "records": 0}
                    self.stopped.wait(self.refresh_s)
                    continue
                batch = consumer.poll(timeout_ms=200, max_records=5000)
                with self.lock:
                    for partition, records in batch.items():
                        for record in records:
                            if record.value is not None:
                                self.tally.add(partition.topic, record.value)
                            self._next_offsets[partition] = record.offset + 1
                    self.feed_state = {"available": True, "error": None, "records": sum(self.tally.counts.values())}
            except Exception as exc:  # broker down or restarting: report, retry
                self.feed_state = {"available": False, "error": f"{type(exc).__name__}: {exc}"[:300], "records": 0}
                if consumer is not None:
                    with contextlib.suppress(Exception):  # already broken
                        consumer.close()
                consumer = None
                self.stopped.wait(2.0)
        if consumer is not None:
            consumer.close()

    def _poll(self) -> None:
        next_freshness = 0.0
        while not self.stopped.is_set():
            started = time.monotonic()
            flink = self.flink.collect()
            kafka = self.offsets.collect()
            if started >= next_freshness:
                self.freshness = self.freshness_source.collect()
                next_freshness = started + self.freshness_every_s
            model = self._model_state()
            with self.lock:
                self.health = {"flink": flink, "kafka": kafka, "model": model}
                self.history.append(self._history_point(flink))
            with self.updated:
                self.version += 1
                self.updated.notify_all()
            self.stopped.wait(max(self.refresh_s - (time.monotonic() - started), 0.05))

    def _model_state(self) -> dict[str, Any]:
        """The serving model's age against the kill switch's limit (``models.max_age_h``)."""
        from pricewave.pricing.artifact import artifact_age_s

        age = artifact_age_s(self.settings.model_dir)
        limit = self.settings.models.max_age_s
        return {
            "dir": str(self.settings.model_dir),
            "age_s": None if age is None else round(age, 1),
            "max_age_s": limit,
            "stale": age is None or age > limit,
        }

    def _history_point(self, flink: dict[str, Any]) -> dict[str, Any]:
        prices = self.tally.price_figures()
        operators = flink.get("operators") or []
        lags = [op["watermark_lag_ms"] for op in operators if op.get("watermark_lag_ms") is not None]
        return {
            "t": round(time.time(), 3),
            "updates_per_minute": prices["updates_per_minute"],
            "latency_p50_ms": prices["latency_ms"]["p50"],
            "latency_p99_ms": prices["latency_ms"]["p99"],
            "prices_total": prices["total"],
            "dead_letters_total": self.tally.dead_letters_total,
            "watermark_lag_ms": max(lags) if lags else None,
        }

    def wait_for_update(self, version: int, timeout_s: float) -> int:
        """Block until a poll newer than ``version`` finished (or the timeout); returns the latest."""
        with self.updated:
            self.updated.wait_for(lambda: self.version != version or self.stopped.is_set(), timeout=timeout_s)
            return self.version

    # -- the JSON the dashboard reads ---------------------------------------------------------

    def snapshot(self, sku: str | None = None) -> dict[str, Any]:
        """Every panel as one JSON-ready dict; ``sku`` picks the price chart (default: the busiest)."""
        with self.lock:
            skus = self.tally.busiest_skus()
            chosen = sku if sku in self.tally.history else (skus[0] if skus else None)
            topics = self.settings.topics
            return {
                "generated_at": int(time.time() * 1000),
                "version": self.version,
                "refresh_s": self.refresh_s,
                "topics": {
                    "prices": topics.prices,
                    "dlq": topics.dlq,
                    "competitor_prices": topics.competitor_prices,
                    "clicks": topics.clicks,
                    "reviews": topics.reviews,
                },
                "flink": {**self.health["flink"], "web_ui": self.settings.flink.rest_url},
                "kafka": self.health["kafka"],
                "model": self.health.get("model", {}),
                "feed": dict(self.feed_state),
                "counts": dict(self.tally.counts),
                "unparsed": self.tally.unparsed,
                "prices": self.tally.price_figures(),
                "dead_letters": self.tally.dead_letter_figures(),
                "freshness": self.freshness,
                "skus": skus,
                "sku_series": self.tally.sku_series(chosen) if chosen else None,
                "history": list(self.history),
            }
