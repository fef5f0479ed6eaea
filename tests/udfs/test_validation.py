"""The validation UDF's body: schema reasons first, then no event time, then lateness."""

from __future__ import annotations

import time

import pandas as pd

from udfs.validation import EventValidator

NOW_MS = int(time.time() * 1000)


def _competitor(event_time: int, price: float = 2.5) -> bytes:
    return b'{"event_id":"e","sku":"A","competitor":"c","price":%s,"in_stock":true,"event_time":%d}' % (
        str(price).encode(),
        event_time,
    )


def test_a_valid_record_without_event_time_from_the_source_is_dead_lettered_not_dropped() -> None:
    validator = EventValidator("competitor_price", max_clock_skew_s=300)
    raw = pd.Series([_competitor(NOW_MS), _competitor(NOW_MS + 600_000), _competitor(NOW_MS, price=-1.0)])
    reasons = validator.reasons(raw, pd.Series([False, False, False]), pd.Series([False, True, True]))
    assert reasons[0] is None
    assert reasons[1] == "bad_timestamp: event_time more than 300 s ahead of the job's clock"
    assert reasons[2].startswith("out_of_range: price")  # the schema's reason wins


def test_lateness_only_applies_to_records_that_are_otherwise_accepted() -> None:
    validator = EventValidator("competitor_price", max_clock_skew_s=60)
    raw = pd.Series([_competitor(NOW_MS), _competitor(NOW_MS), _competitor(NOW_MS)])
    reasons = validator.reasons(raw, pd.Series([True, True, False]), pd.Series([False, True, False]))
    assert reasons.tolist() == ["late", validator.unstamped_reason(), None]
    assert "60 s ahead" in validator.unstamped_reason()


def _heartbeat(event_time: int, extra: bytes = b"") -> bytes:
    return b'{"heartbeat":"crawler","event_time":%d%s}' % (event_time, extra)


def test_a_heartbeat_is_neither_a_feature_nor_a_dead_letter_unless_its_clock_runs_ahead() -> None:
    """Any input topic takes heartbeats; one the source could not stamp is a bad_timestamp like any record."""
    for schema in ("click_event", "competitor_price", "review"):
        validator = EventValidator(schema, max_clock_skew_s=300)
        raw = pd.Series([_heartbeat(NOW_MS), _heartbeat(NOW_MS + 600_000), _heartbeat(NOW_MS, b',"sku":"A"')])
        reasons = validator.reasons(raw, unstamped=pd.Series([False, True, False])).tolist()
        assert reasons[0] == "heartbeat"
        assert reasons[1] == validator.unstamped_reason()
        # Not a heartbeat (its schema allows no other field): the topic schema's own verdict.
        assert reasons[2] is not None and reasons[2] != "heartbeat" and reasons[2].startswith("missing_field")
        # A lateness flag never turns a heartbeat into a dead letter.
        assert validator.reasons(raw[:1], late=pd.Series([True])).tolist() == ["heartbeat"]
