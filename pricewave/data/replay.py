"""Replay real transactions into Kafka as click events, in event-time order, optionally paced.

Each Ta Feng line item becomes one ``purchase`` :data:`click_event`:

==============  =====================================================================
field           from
==============  =====================================================================
event_id        ``tf-<file row>`` (stable across runs, so reruns are recognisable)
user_key        keyed hash of ``customer_id`` (:func:`pricewave.privacy.pseudonymize_user`)
session_id      ``tf-<yyyymmdd>-<user key prefix>``: one session per customer and day
sku             ``tf-<product_id>``
price_seen      ``sales_price / amount`` (the unit price; the file holds line totals)
quantity        ``amount``
channel         ``web``
event_time      the day's date plus a deterministic time of day (see below)
==============  =====================================================================

The file only has dates. A customer's line items of one day form a basket: the basket gets a
checkout time between :data:`STORE_OPENS_MS` and :data:`STORE_CLOSES_MS` (Taipei time) drawn
from a hash of its *pseudonymous* key and the day (a hash of the raw id would let anyone with
the event times test guesses of customer ids), and its items follow one second apart.

Raw customer ids, ``age_group`` and ``pin_code`` never leave the process: events and
dead letters are built from the pseudonymous key and :data:`~pricewave.data.datasets.TA_FENG_MODEL_COLUMNS`
only. A row that fails ``validate_record("click_event", ...)`` is not dropped: it goes to the
dead-letter topic with the reason and the encoded candidate event as its raw bytes (the raw CSV
line would carry the protected attributes).

Kafka message timestamps are left to the producer's clock on purpose: with event times from 2000
as message timestamps, the broker's time-based retention would delete the replay at once.

Example:
    >>> pace = Pacer(speedup=86_400.0)  # one day of event time per wall second
    >>> pace.offset_s(event_time_ms=43_200_000, index=10, first_event_time_ms=0)
    0.5
    >>> Pacer(speedup=0.0, rate=100.0).offset_s(event_time_ms=0, index=10, first_event_time_ms=0)
    0.1
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from kafka import KafkaProducer
from kafka.errors import KafkaError
from tqdm import tqdm

from pricewave import kafka_io
from pricewave.config import Settings
from pricewave.data.datasets import load_ta_feng
from pricewave.errors import ConfigError, StackError
from pricewave.privacy import pseudonymize_user
from pricewave.schemas import InvalidEvent, validate_record

CLICK_SCHEMA = "click_event"
DEAD_LETTER_SCHEMA = "dead_letter"

_HOUR_MS = 3_600_000
# Ta Feng is a Taipei store (UTC+8, no daylight saving since 1979).
STORE_UTC_OFFSET_MS = 8 * _HOUR_MS
STORE_OPENS_MS = 8 * _HOUR_MS
"""Earliest checkout, ms after local midnight (08:00)."""
STORE_CLOSES_MS = 22 * _HOUR_MS
"""Latest basket start, ms after local midnight (22:00); items follow it a second apart."""
ITEM_SPACING_MS = 1_000

_EVENT_COLUMNS = ["row_index", "user_key", "session_id", "sku", "price_seen", "quantity", "event_time"]


# ---------------------------------------------------------------------------------------------
# Row -> event mapping
# ---------------------------------------------------------------------------------------------


def _basket_offset_ms(user_key: str, day: str) -> int:
    """Deterministic checkout time within opening hours, from the pseudonymous key and day."""
    digest = hashlib.blake2b(f"{user_key}|{day}".encode(), digest_size=8).digest()
    return STORE_OPENS_MS + int.from_bytes(digest, "big") % (STORE_CLOSES_MS - STORE_OPENS_MS)


def ta_feng_event_frame(frame: pd.DataFrame, secret: bytes) -> pd.DataFrame:
    """Map Ta Feng rows (as :func:`~pricewave.data.datasets.load_ta_feng` returns) to event columns.

    Args:
        frame: Ta Feng rows; the index is taken as the file row (``event_id``).
        secret: The HMAC key for user keys (``settings.user_key_secret``).

    Returns:
        One row per input row, sorted by ``event_time`` then file row, with columns
        ``row_index, user_key, session_id, sku, price_seen, quantity, event_time``. No raw
        customer id and no protected attribute is carried over.
    """
    if frame.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in _EVENT_COLUMNS})
    keys = {raw: pseudonymize_user(str(raw), secret) for raw in frame["customer_id"].unique()}
    user_key = frame["customer_id"].map(keys)
    dates = pd.to_datetime(frame["transaction_date"]).dt.normalize()
    # Formatting ~120 distinct days beats formatting every row.
    day = dates.map({d: d.strftime("%Y%m%d") for d in dates.unique()})
    midnight_ms = (dates - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1) - STORE_UTC_OFFSET_MS

    baskets = pd.DataFrame({"user_key": user_key, "day": day})
    grouped = baskets.groupby(["user_key", "day"], sort=False)
    # ngroup(sort=False) numbers baskets in order of first appearance, as drop_duplicates lists them.
    firsts = baskets.drop_duplicates()
    basket_ms = np.array(
        [_basket_offset_ms(k, d) for k, d in zip(firsts["user_key"], firsts["day"], strict=True)], dtype=np.int64
    )[grouped.ngroup().to_numpy()]
    position = grouped.cumcount().to_numpy(dtype=np.int64)

    amount = frame["amount"].to_numpy(dtype=np.int64)
    sales_price = frame["sales_price"].to_numpy(dtype=np.float64)
    # A zero amount keeps the line total as the price, so validation rejects the quantity,
    # not a division by zero (which JSON cannot even carry).
    safe_amount = np.where(amount == 0, 1, amount)
    events = pd.DataFrame(
        {
            "row_index": frame.index.to_numpy(dtype=np.int64),
            "user_key": user_key.to_numpy(),
            "session_id": ("tf-" + day + "-" + user_key.str[:16]).to_numpy(),
            "sku": ("tf-" + frame["product_id"].astype(str)).to_numpy(),
            "price_seen": sales_price / safe_amount,
            "quantity": amount,
            "event_time": (midnight_ms.to_numpy(dtype=np.int64) + basket_ms + position * ITEM_SPACING_MS),
        }
    )
    return events.sort_values(["event_time", "row_index"], kind="stable", ignore_index=True)


def iter_click_events(events: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Yield ``click_event`` records from :func:`ta_feng_event_frame`'s rows, in order."""
    columns = [events[name].to_numpy() for name in _EVENT_COLUMNS]
    for row_index, user_key, session_id, sku, price_seen, quantity, event_time in zip(*columns, strict=True):
        yield {
            "event_id": f"tf-{int(row_index)}",
            "event_type": "purchase",
            "user_key": user_key,
            "session_id": session_id,
            "sku": sku,
            "price_seen": float(price_seen),
            "quantity": int(quantity),
            "channel": "web",
            "event_time": int(event_time),
        }


def ta_feng_click_events(frame: pd.DataFrame, secret: bytes) -> Iterator[dict[str, Any]]:
    """Ta Feng rows as ``purchase`` click events, in event-time order (see the module doc)."""
    return iter_click_events(ta_feng_event_frame(frame, secret))


def dead_letter(
    reason: str, raw: bytes, *, source_topic: str, event_time: int | None, now_ms: int | None = None
) -> dict[str, Any]:
    """A ``dead_letter`` record for a candidate event that never reached a topic.

    Args:
        reason: Why it was rejected (``InvalidEvent.reason``).
        raw: The rejected bytes.
        source_topic: The topic the event was meant for.
        event_time: The candidate's event time, when it has one.
        now_ms: The dead-letter time; defaults to the wall clock.
    """
    return {
        "reason": reason,
        "source_topic": source_topic,
        "partition": -1,
        "offset": -1,
        "raw_b64": base64.b64encode(raw).decode("ascii"),
        "raw_size": len(raw),
        "schema": CLICK_SCHEMA,
        "dead_letter_time": int(time.time() * 1000) if now_ms is None else now_ms,
        "event_time": event_time,
    }


# ---------------------------------------------------------------------------------------------
# Pacing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pacer:
    """When each event may be sent, relative to the start of the replay.

    Attributes:
        speedup: Event-time seconds per wall second; 0 means no event-time pacing.
        rate: At most this many events per wall second; ``None`` means no cap.
    """

    speedup: float = 0.0
    rate: float | None = None

    def __post_init__(self) -> None:
        if not self.speedup >= 0 or self.speedup == float("inf"):
            raise ConfigError(f"--speedup must be a finite number >= 0 (0 = as fast as possible), not {self.speedup}")
        if self.rate is not None and (not self.rate > 0 or self.rate == float("inf")):
            raise ConfigError(f"--rate must be a finite number of events per second > 0, not {self.rate}")

    def offset_s(self, *, event_time_ms: int, index: int, first_event_time_ms: int) -> float:
        """Wall seconds after the start at which event number ``index`` (0-based) is due.

        Event time advances ``speedup`` times faster than wall time, and the ``index``-th event
        waits until ``index / rate``; the later of the two wins.
        """
        due = 0.0
        if self.speedup > 0:
            due = max(0.0, (event_time_ms - first_event_time_ms) / 1000.0 / self.speedup)
        if self.rate is not None:
            due = max(due, index / self.rate)
        return due


# ---------------------------------------------------------------------------------------------
# Producing
# ---------------------------------------------------------------------------------------------


@dataclass
class ReplayStats:
    """What a replay did. ``events_sent`` and ``dead_lettered`` count acknowledged messages."""

    rows_read: int = 0
    events_sent: int = 0
    dead_lettered: int = 0
    elapsed_s: float = 0.0
    failed: int = 0
    first_error: str | None = field(default=None, repr=False)

    @property
    def events_per_s(self) -> float:
        """Messages (events and dead letters) per wall second."""
        return (self.events_sent + self.dead_lettered) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self, topic: str, dlq_topic: str) -> str:
        """One line for people."""
        return (
            f"replayed {self.rows_read:,} rows: {self.events_sent:,} events sent to '{topic}', "
            f"{self.dead_lettered:,} dead-lettered to '{dlq_topic}' in {self.elapsed_s:.1f} s "
            f"({self.events_per_s:,.0f} events/s)"
        )


def replay_events(
    producer: KafkaProducer,
    events: Iterable[dict[str, Any]],
    *,
    topic: str,
    dlq_topic: str,
    pacer: Pacer | None = None,
    total: int | None = None,
    progress: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayStats:
    """Validate, encode and send click events in order; invalid ones go to ``dlq_topic``.

    Messages are keyed by sku. The producer is flushed before returning.

    Args:
        producer: A raw-bytes producer (:func:`pricewave.kafka_io.make_producer`).
        events: Candidate ``click_event`` records, in event-time order.
        topic: Where valid events go.
        dlq_topic: Where ``dead_letter`` records for invalid events go.
        pacer: Pacing; ``None`` sends as fast as possible.
        total: The number of events, for the progress bar.
        progress: Show a progress bar.
        clock: Monotonic seconds (injectable for tests).
        sleep: Sleeps seconds (injectable for tests).

    Returns:
        The counts; ``failed`` counts messages the broker did not acknowledge.
    """
    pacer = pacer or Pacer()
    stats = ReplayStats()

    def acked(kind: str) -> Callable[[Any], None]:
        def on_success(_metadata: Any) -> None:
            if kind == "event":
                stats.events_sent += 1
            else:
                stats.dead_lettered += 1

        return on_success

    def on_error(exc: BaseException) -> None:
        stats.failed += 1
        if stats.first_error is None:
            stats.first_error = str(exc) or type(exc).__name__

    on_event, on_dead = acked("event"), acked("dead")
    started = clock()
    first_event_time: int | None = None
    try:
        with tqdm(total=total, desc=f"replay -> {topic}", unit="ev", disable=not progress) as bar:
            for index, event in enumerate(events):
                event_time = event.get("event_time")
                if isinstance(event_time, int):
                    if first_event_time is None:
                        first_event_time = event_time
                    due = started + pacer.offset_s(
                        event_time_ms=event_time, index=index, first_event_time_ms=first_event_time
                    )
                    wait = due - clock()
                    if wait > 0.001:
                        sleep(wait)
                raw = kafka_io.encode_json(event)
                key = str(event.get("sku", "")).encode("utf-8")
                try:
                    validate_record(CLICK_SCHEMA, event)
                except InvalidEvent as exc:
                    letter = dead_letter(
                        exc.reason,
                        raw,
                        source_topic=topic,
                        event_time=event_time if isinstance(event_time, int) else None,
                    )
                    future = producer.send(dlq_topic, key=key, value=kafka_io.encode_json(letter))
                    future.add_callback(on_dead).add_errback(on_error)
                else:
                    future = producer.send(topic, key=key, value=raw)
                    future.add_callback(on_event).add_errback(on_error)
                stats.rows_read += 1
                bar.update(1)
        producer.flush()
    except KafkaError as exc:
        raise StackError(f"could not send to Kafka ({exc}): check the broker with 'pricewave stack status'") from None
    stats.elapsed_s = clock() - started
    return stats


def replay_ta_feng(
    settings: Settings,
    *,
    speedup: float = 0.0,
    rate: float | None = None,
    limit: int | None = None,
    topic: str | None = None,
    dlq_topic: str | None = None,
    progress: bool = True,
) -> ReplayStats:
    """Stream Ta Feng transactions into Kafka as ``purchase`` click events.

    Reads the first ``limit`` rows of the file (all by default), orders them by event time and
    sends them to ``topic`` (default ``settings.topics.clicks``); invalid ones become dead
    letters on ``dlq_topic`` (default ``settings.topics.dlq``). Missing topics are created.

    Raises:
        ConfigError: A pacing argument is invalid.
        DataError: The data cannot be fetched or read.
        StackError: The broker cannot be reached or did not acknowledge every message.
    """
    pacer = Pacer(speedup=speedup, rate=rate)
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit must be >= 0, not {limit}")
    topic = topic or settings.topics.clicks
    dlq_topic = dlq_topic or settings.topics.dlq
    kafka_io.ensure_topics(settings, [topic, dlq_topic])  # first, so a missing broker fails fast
    frame = load_ta_feng(settings, limit=limit, progress=progress)
    events = ta_feng_event_frame(frame, settings.user_key_secret)
    del frame  # the raw frame (ids, protected attributes) is not needed past this point
    producer = kafka_io.make_producer(settings)
    try:
        stats = replay_events(
            producer,
            iter_click_events(events),
            topic=topic,
            dlq_topic=dlq_topic,
            pacer=pacer,
            total=len(events),
            progress=progress,
        )
    finally:
        producer.close(timeout=30)
    if stats.failed:
        raise StackError(
            f"{stats.failed:,} of {stats.rows_read:,} messages were not acknowledged by "
            f"{settings.kafka.bootstrap_servers} (first error: {stats.first_error}): check 'pricewave stack status'"
        )
    return stats
