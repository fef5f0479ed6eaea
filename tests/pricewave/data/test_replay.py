"""Tests for pricewave.data.replay and ``pricewave replay``."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kafka.errors import KafkaError

from pricewave import kafka_io
from pricewave.config import Settings
from pricewave.data.datasets import load_ta_feng
from pricewave.data.replay import (
    ITEM_SPACING_MS,
    STORE_CLOSES_MS,
    STORE_OPENS_MS,
    STORE_UTC_OFFSET_MS,
    Pacer,
    dead_letter,
    replay_events,
    replay_ta_feng,
    ta_feng_click_events,
)
from pricewave.errors import ConfigError
from pricewave.privacy import is_user_key, pseudonymize_user
from pricewave.schemas import InvalidEvent, validate_record
from pricewave.stack.process import child_environment
from tests.conftest import consume_all

SECRET = b"test-secret"
REPO = Path(__file__).resolve().parents[3]
PRICEWAVE = REPO / ".venv" / "bin" / "pricewave"

# Distinctive stand-ins for the protected values, so a leak cannot hide behind a coincidence.
CUSTOMER = "CUSTOMER-00000042"
AGE_GROUP = "AGEGROUP-35-39"
PIN_CODE = "PINCODE-115"


def _rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {
        "customer_id": CUSTOMER,
        "age_group": AGE_GROUP,
        "pin_code": PIN_CODE,
        "product_subclass": "110411",
    }
    frame = pd.DataFrame([{**base, **row} for row in rows])
    frame["transaction_date"] = pd.to_datetime(frame["transaction_date"])
    return frame


def _day_ms(day: str) -> int:
    """Local (Taipei) midnight of ``day`` in epoch millis."""
    return int(pd.Timestamp(day, tz="Asia/Taipei").timestamp() * 1000)


# ---------------------------------------------------------------------------------------------
# Row -> event mapping (pure)
# ---------------------------------------------------------------------------------------------


def test_rows_map_to_purchase_events_in_event_time_order() -> None:
    frame = _rows(
        [
            {
                "transaction_date": "2000-11-02",
                "product_id": "4710199010372",
                "amount": 2,
                "asset": 24,
                "sales_price": 30,
            },
            {
                "transaction_date": "2000-11-01",
                "product_id": "4710857472535",
                "amount": 1,
                "asset": 48,
                "sales_price": 46,
            },
            {
                "transaction_date": "2000-11-01",
                "product_id": "4710043654103",
                "amount": 4,
                "asset": 142,
                "sales_price": 166,
            },
            {
                "transaction_date": "2000-11-01",
                "product_id": "20",
                "amount": 1,
                "asset": 5,
                "sales_price": 7,
                "customer_id": "OTHER-CUSTOMER",
            },
        ]
    )
    events = list(ta_feng_click_events(frame, SECRET))
    assert len(events) == 4
    times = [e["event_time"] for e in events]
    assert times == sorted(times)
    assert events[-1]["event_id"] == "tf-0"  # the 2000-11-02 row comes last

    by_id = {e["event_id"]: e for e in events}
    key = pseudonymize_user(CUSTOMER, SECRET)
    first = by_id["tf-0"]
    assert first == {
        "event_id": "tf-0",
        "event_type": "purchase",
        "user_key": key,
        "session_id": f"tf-20001102-{key[:16]}",
        "sku": "tf-4710199010372",
        "price_seen": 15.0,  # 30 for 2 units: the unit price
        "quantity": 2,
        "channel": "web",
        "event_time": first["event_time"],
    }
    assert by_id["tf-2"]["price_seen"] == 41.5
    assert by_id["tf-3"]["user_key"] == pseudonymize_user("OTHER-CUSTOMER", SECRET)

    # One basket per customer and day: same session, items one second apart, inside opening hours.
    basket = [by_id["tf-1"], by_id["tf-2"]]
    assert basket[0]["session_id"] == basket[1]["session_id"] != first["session_id"]
    assert basket[1]["event_time"] - basket[0]["event_time"] == ITEM_SPACING_MS
    for event, day in ((first, "2000-11-02"), (by_id["tf-1"], "2000-11-01"), (by_id["tf-3"], "2000-11-01")):
        assert STORE_OPENS_MS <= event["event_time"] - _day_ms(day) < STORE_CLOSES_MS + ITEM_SPACING_MS * 10
    assert _day_ms("2000-11-01") == int(pd.Timestamp("2000-11-01").timestamp() * 1000) - STORE_UTC_OFFSET_MS

    for event in events:
        validate_record("click_event", event)


def test_mapping_is_deterministic_and_keyed_by_the_secret() -> None:
    frame = _rows(
        [{"transaction_date": "2001-01-05", "product_id": "1", "amount": 1, "asset": 1, "sales_price": 2}] * 3
    )
    once = list(ta_feng_click_events(frame, SECRET))
    again = list(ta_feng_click_events(frame, SECRET))
    other_key = list(ta_feng_click_events(frame, b"another-secret"))
    assert once == again
    assert [e["event_id"] for e in once] == ["tf-0", "tf-1", "tf-2"]
    assert once[0]["user_key"] != other_key[0]["user_key"]
    assert all(is_user_key(e["user_key"]) for e in other_key)


def test_no_raw_id_or_protected_attribute_reaches_the_wire() -> None:
    frame = _rows(
        [
            {"transaction_date": "2000-12-04", "product_id": "4710", "amount": 1, "asset": 12, "sales_price": 13},
            # 1,200 units: over the schema's quantity limit, so this one becomes a dead letter.
            {
                "transaction_date": "2000-12-04",
                "product_id": "4711",
                "amount": 1200,
                "asset": 14400,
                "sales_price": 14820,
            },
        ]
    )
    wire: list[bytes] = []
    for event in ta_feng_click_events(frame, SECRET):
        raw = kafka_io.encode_json(event)
        wire.append(raw)
        try:
            validate_record("click_event", event)
        except InvalidEvent as exc:
            letter = dead_letter(exc.reason, raw, source_topic="clicks", event_time=event["event_time"])
            validate_record("dead_letter", letter)
            wire.append(kafka_io.encode_json(letter))
            wire.append(base64.b64decode(letter["raw_b64"]))
    assert len(wire) == 4  # two events, one dead letter and the bytes inside it
    for raw in wire:
        for secret_value in (CUSTOMER, AGE_GROUP, PIN_CODE, "customer_id", "age_group", "pin_code"):
            assert secret_value.encode() not in raw


def test_real_rows_carry_no_raw_ids(settings: Settings) -> None:
    frame = load_ta_feng(settings, limit=2000, progress=False)
    raw_ids = dict(zip(frame.index, frame["customer_id"], strict=True))
    events = list(ta_feng_click_events(frame, settings.user_key_secret))
    assert len(events) == 2000
    for event in events:
        raw = kafka_io.encode_json(event)
        assert raw_ids[int(event["event_id"][3:])].encode() not in raw
        assert b"age_group" not in raw and b"pin_code" not in raw
        validate_record("click_event", event)


# ---------------------------------------------------------------------------------------------
# Pacing (pure)
# ---------------------------------------------------------------------------------------------


def test_pacer_compresses_event_time_by_the_speedup() -> None:
    pace = Pacer(speedup=3600.0)  # an hour of event time per wall second
    assert pace.offset_s(event_time_ms=1_000 + 7_200_000, index=5, first_event_time_ms=1_000) == 2.0
    assert pace.offset_s(event_time_ms=1_000, index=5, first_event_time_ms=1_000) == 0.0


def test_pacer_caps_the_rate_and_takes_the_later_deadline() -> None:
    assert Pacer(rate=50.0).offset_s(event_time_ms=10**12, index=100, first_event_time_ms=0) == 2.0
    both = Pacer(speedup=1000.0, rate=10.0)
    assert both.offset_s(event_time_ms=5_000_000, index=3, first_event_time_ms=0) == 5.0  # event time later
    assert both.offset_s(event_time_ms=100_000, index=30, first_event_time_ms=0) == 3.0  # rate cap later


def test_pacer_without_limits_never_waits() -> None:
    assert Pacer().offset_s(event_time_ms=10**12, index=10**6, first_event_time_ms=0) == 0.0


@pytest.mark.parametrize(("speedup", "rate"), [(-1.0, None), (float("nan"), None), (float("inf"), None), (0.0, 0.0)])
def test_pacer_rejects_bad_settings(speedup: float, rate: float | None) -> None:
    with pytest.raises(ConfigError):
        Pacer(speedup=speedup, rate=rate)


class _Future:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], None]] = []

    def add_callback(self, fn: Callable[[Any], None]) -> _Future:
        self.callbacks.append(fn)
        return self

    def add_errback(self, fn: Callable[[Any], None]) -> _Future:
        return self


class _RecordingProducer:
    """Stands in for a KafkaProducer in pure tests: records sends, acknowledges on flush."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.pending: list[_Future] = []

    def send(self, topic: str, *, key: bytes, value: bytes) -> _Future:
        self.sent.append((topic, key, value))
        future = _Future()
        self.pending.append(future)
        return future

    def flush(self) -> None:
        for future in self.pending:
            for callback in future.callbacks:
                callback(None)
        self.pending.clear()


def test_replay_loop_paces_routes_and_counts() -> None:
    base = 975_000_000_000
    good = {
        "event_id": "a",
        "event_type": "purchase",
        "user_key": "0" * 32,
        "session_id": "s",
        "price_seen": 2.5,
        "quantity": 1,
        "channel": "web",
    }
    events = [
        {**good, "event_id": "a", "sku": "tf-1", "event_time": base},
        {**good, "event_id": "b", "sku": "tf-2", "event_time": base + 10_000, "price_seen": 0},
        {**good, "event_id": "c", "sku": "tf-1", "event_time": base + 20_000},
    ]
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    producer = _RecordingProducer()
    stats = replay_events(
        producer,
        events,
        topic="t",
        dlq_topic="t-dlq",
        pacer=Pacer(speedup=10.0),
        progress=False,
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert sleeps == pytest.approx([1.0, 1.0])  # 10 s of event time apart, 10x faster
    assert (stats.rows_read, stats.events_sent, stats.dead_lettered) == (3, 2, 1)
    assert stats.elapsed_s == pytest.approx(2.0)
    assert stats.events_per_s == pytest.approx(1.5)
    assert [(topic, key) for topic, key, _ in producer.sent] == [("t", b"tf-1"), ("t-dlq", b"tf-2"), ("t", b"tf-1")]
    letter = json.loads(producer.sent[1][2])
    validate_record("dead_letter", letter)
    assert letter["reason"].startswith("out_of_range") and "price_seen" in letter["reason"]
    assert json.loads(base64.b64decode(letter["raw_b64"]))["event_id"] == "b"
    assert letter["raw_size"] == len(base64.b64decode(letter["raw_b64"]))
    assert (letter["source_topic"], letter["partition"], letter["offset"]) == ("t", -1, -1)
    assert letter["event_time"] == base + 10_000
    assert "replayed 3 rows: 2 events sent to 't', 1 dead-lettered to 't-dlq'" in stats.summary("t", "t-dlq")


# ---------------------------------------------------------------------------------------------
# CLI argument errors (no broker needed)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "ta-feng", "--speedup", "fast"],
        ["replay", "ta-feng", "--speedup", "-2"],
        ["replay", "ta-feng", "--rate", "0"],
        ["replay", "ta-feng", "--limit", "-5"],
        ["replay", "no-such-dataset"],
    ],
)
def test_cli_bad_argument_is_one_readable_line(argv: list[str]) -> None:
    result = subprocess.run([str(PRICEWAVE), *argv], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pricewave: error:")
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# Integration: the real broker
# ---------------------------------------------------------------------------------------------


def _child_env(settings: Settings) -> dict[str, str]:
    """The environment that points a ``pricewave`` subprocess at the same broker and state dir."""
    env = child_environment()
    env.update(
        {
            "PRICEWAVE_KAFKA__HOST": settings.kafka.host,
            "PRICEWAVE_KAFKA__PORT": str(settings.kafka.port),
            "PRICEWAVE_STATE_DIR": str(settings.state_dir),
            "PRICEWAVE_USER_KEY_SECRET": settings.user_key_secret.decode(),
        }
    )
    return env


@pytest.fixture
def fresh_dlq_topic(fresh_topic: str, settings: Settings) -> Iterator[str]:
    """A second fresh topic, for dead letters, deleted after the test (fresh_topic gives only one)."""
    name = f"{fresh_topic}-dlq"
    kafka_io.ensure_topics(settings, [name])
    yield name
    admin = kafka_io.make_admin(settings)
    try:
        admin.delete_topics([name])
    except KafkaError:  # best effort, as for fresh_topic: a leftover test topic harms nothing
        pass
    finally:
        admin.close()


@pytest.mark.integration
def test_replay_5000_rows_lands_every_row_once(
    settings: Settings, kafka_stack: Any, fresh_topic: str, fresh_dlq_topic: str
) -> None:
    dlq_topic = fresh_dlq_topic
    stats = replay_ta_feng(settings, limit=5000, topic=fresh_topic, dlq_topic=dlq_topic, progress=False)
    assert stats.rows_read == 5000
    assert stats.events_sent + stats.dead_lettered == 5000
    events = consume_all(settings, fresh_topic, expected=stats.events_sent)
    letters = consume_all(settings, dlq_topic, expected=stats.dead_lettered, timeout_s=10)
    assert len(events) + len(letters) == 5000
    assert (len(events), len(letters)) == (stats.events_sent, stats.dead_lettered)
    decoded = [json.loads(record.value) for record in events]
    assert len({e["event_id"] for e in decoded}) == len(decoded)
    assert all(record.key == e["sku"].encode() for record, e in zip(events, decoded, strict=True))
    for event in decoded:
        validate_record("click_event", event)
    # Within a partition, event time never goes backwards.
    by_partition: dict[int, list[int]] = {}
    for record, event in zip(events, decoded, strict=True):
        by_partition.setdefault(record.partition, []).append(event["event_time"])
    assert all(times == sorted(times) for times in by_partition.values())


@pytest.mark.integration
def test_a_real_invalid_row_is_dead_lettered(
    settings: Settings, kafka_stack: Any, fresh_topic: str, fresh_dlq_topic: str
) -> None:
    # Row 271,999 of Ta Feng sells 1,200 units on one line: over click_event's quantity limit.
    frame = load_ta_feng(settings, progress=False).iloc[271_995:272_005]
    assert frame.loc[271_999, "amount"] == 1200
    dlq_topic = fresh_dlq_topic
    producer = kafka_io.make_producer(settings)
    try:
        stats = replay_events(
            producer,
            ta_feng_click_events(frame, settings.user_key_secret),
            topic=fresh_topic,
            dlq_topic=dlq_topic,
            progress=False,
        )
    finally:
        producer.close()
    assert (stats.events_sent, stats.dead_lettered) == (9, 1)
    assert len(consume_all(settings, fresh_topic, expected=9)) == 9
    [record] = consume_all(settings, dlq_topic, expected=1, timeout_s=10)
    letter = json.loads(record.value)
    validate_record("dead_letter", letter)
    assert "quantity" in letter["reason"]
    assert record.key == b"tf-" + str(frame.loc[271_999, "product_id"]).encode()
    raw = base64.b64decode(letter["raw_b64"])
    assert json.loads(raw)["event_id"] == "tf-271999"
    assert str(frame.loc[271_999, "customer_id"]).encode() not in raw + record.value


@pytest.mark.integration
def test_cli_replays_into_a_topic(settings: Settings, kafka_stack: Any, fresh_topic: str) -> None:
    result = subprocess.run(
        [str(PRICEWAVE), "replay", "ta-feng", "--limit", "200", "--topic", fresh_topic],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_child_env(settings),
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert f"replayed 200 rows: 200 events sent to '{fresh_topic}', 0 dead-lettered" in summary
    assert "events/s" in summary
    assert len(consume_all(settings, fresh_topic, expected=200)) == 200


def test_python_runs_the_package_cli() -> None:
    # `python -m pricewave replay --help` works without a broker and lists the data set.
    result = subprocess.run(
        [sys.executable, "-m", "pricewave", "replay", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "ta-feng" in result.stdout
