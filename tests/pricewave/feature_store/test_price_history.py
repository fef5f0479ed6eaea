"""The sku price history on real stores (SQLite file, password-protected Redis): as of event time."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricewave.errors import DataError
from pricewave.feature_store.price_history import PriceHistory

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000
MINUTE = 60_000


def fresh_sku() -> str:
    return f"PH-{uuid.uuid4().hex[:8]}"


def test_latest_before_is_strictly_before_the_event_time(any_store: Any) -> None:
    history = PriceHistory(any_store)
    sku = fresh_sku()
    history.record([sku, sku, sku], [T0, T0 + MINUTE, T0 + 2 * MINUTE], [10.0, 10.5, 11.0])
    times = [T0 - 1, T0, T0 + 1, T0 + MINUTE, T0 + 5 * MINUTE]
    assert history.latest_before([sku] * len(times), times) == [None, None, 10.0, 10.0, 11.0]
    assert history.latest_before([fresh_sku()], [T0]) == [None]


def test_recording_an_event_time_again_replaces_it_and_prices_round_trip_exactly(any_store: Any) -> None:
    history = PriceHistory(any_store)
    sku = fresh_sku()
    history.record([sku], [T0], [9.99])
    history.record([sku], [T0], [0.1 + 0.2])  # a replay that (wrongly) priced otherwise: last one wins
    assert history.latest_before([sku], [T0 + 1]) == [0.1 + 0.2]


def test_entries_older_than_the_retention_are_forgotten(any_store: Any) -> None:
    history = PriceHistory(any_store, retention_s=120)
    sku = fresh_sku()
    history.record([sku] * 3, [T0, T0 + MINUTE, T0 + 2 * MINUTE], [1.0, 2.0, 3.0])
    history.record([sku], [T0 + 4 * MINUTE], [4.0])
    assert history.latest_before([sku] * 3, [T0 + 1, T0 + MINUTE + 1, T0 + 2 * MINUTE + 1]) == [None, None, 3.0]


def test_bad_prices_and_ragged_columns_are_refused_with_one_line(any_store: Any) -> None:
    history = PriceHistory(any_store)
    for prices in ([float("nan")], [0.0], [-1.0], [float("inf")]):
        with pytest.raises(DataError, match="not finite positive"):
            history.record(["X"], [T0], prices)
    with pytest.raises(DataError, match="different lengths"):
        history.latest_before(["X", "Y"], [T0])


def test_sqlite_and_redis_answer_the_same(sqlite_store: Any, redis_store: Any) -> None:
    rng = random.Random(7)
    skus = [fresh_sku() for _ in range(5)]
    rows = [(rng.choice(skus), T0 + rng.randrange(60) * MINUTE, round(rng.uniform(1, 50), 2)) for _ in range(200)]
    asks = [(rng.choice(skus), T0 + rng.randrange(-1, 62) * MINUTE + rng.choice((0, 1))) for _ in range(300)]
    answers = []
    for store in (sqlite_store, redis_store):
        history = PriceHistory(store)
        for start in range(0, len(rows), 37):
            chunk = rows[start : start + 37]
            history.record([r[0] for r in chunk], [r[1] for r in chunk], [r[2] for r in chunk])
        answers.append(history.latest_before([a[0] for a in asks], [a[1] for a in asks]))
    assert answers[0] == answers[1]
    assert any(answer is not None for answer in answers[0]) and None in answers[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.dictionaries(st.integers(0, 50), st.floats(0.01, 1e6, allow_nan=False), min_size=1, max_size=20),
    ask=st.integers(-1, 52),
)
def test_latest_before_matches_a_plain_scan(sqlite_store: Any, entries: dict[int, float], ask: int) -> None:
    history = PriceHistory(sqlite_store)
    sku = fresh_sku()
    minutes = list(entries)
    random.Random(len(minutes)).shuffle(minutes)  # any recording order gives the same answers
    history.record([sku] * len(minutes), [T0 + m * MINUTE for m in minutes], [entries[m] for m in minutes])
    earlier = [m for m in entries if m < ask]
    expected = entries[max(earlier)] if earlier else None
    assert history.latest_before([sku], [T0 + ask * MINUTE]) == [expected]


def test_the_sqlite_store_reads_while_another_connection_writes(sqlite_store: Any) -> None:
    import sqlite3

    from pricewave.feature_store.stores.sqlite import database_path

    # open_store switched the file to write-ahead logging.
    history = PriceHistory(sqlite_store)
    sku = fresh_sku()
    history.record([sku], [T0], [5.0])
    writer = sqlite3.connect(database_path(sqlite_store))
    assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer.execute("BEGIN EXCLUSIVE")  # a push in the middle of its commit
    try:
        assert history.latest_before([sku], [T0 + 1]) == [5.0]  # would wait 30 s, then fail, without WAL
    finally:
        writer.rollback()
        writer.close()
