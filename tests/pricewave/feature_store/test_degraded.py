"""The store degrades, not the job: backlog, retries, catalog copy and timeouts on a real Redis and SQLite.

Each test starts its own redis-server (the stack's :class:`RedisService`: append-only file on) on a
free port, stops it (SIGTERM, a clean shutdown) or freezes it (SIGSTOP: a hung server that still
accepts connections) and starts it again. No JVM.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pricewave.config import Settings, load_settings
from pricewave.feature_store import FeatureWriter, open_store
from pricewave.feature_store.degraded import BufferedPriceHistory, BufferedWriter, CatalogCache, Outage
from pricewave.feature_store.price_history import PriceHistory
from pricewave.feature_store.store import load_repo_config
from pricewave.feature_store.stores import StoreUnavailableError, ops_for
from pricewave.feature_store.stores.redis import client
from pricewave.stack.redis import RedisService
from tests.reliability.harness import free_port, wait_ready

T0 = 1_767_225_600_000
TIMEOUT_S = 1.0
DEGRADED_LOG = "pricewave.feature_store.degraded"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_service(tmp_path: Path) -> Iterator[RedisService]:
    """A private redis-server with persistence on, stopped (and thawed) after the test."""
    settings = load_settings(
        env={"PRICEWAVE_STATE_DIR": str(tmp_path / "state"), "PRICEWAVE_REDIS__PORT": str(free_port())}
    )
    service = RedisService(settings)
    service.install()
    service.start()
    try:
        wait_ready(service)  # tolerant of a false "exited during start-up" under load
        yield service
    finally:
        pid = service.running_pids().get("redis")
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        service.stop()


@pytest.fixture
def redis_settings(redis_service: RedisService, feature_repo_copy: Path) -> Settings:
    """Settings with the Redis profile on the private server, a 1 s store timeout."""
    redis = redis_service.settings.redis.model_copy(update={"timeout_s": TIMEOUT_S})
    return redis_service.settings.model_copy(
        update={"redis": redis, "feature_repo": str(feature_repo_copy), "store_profile": "redis"}
    )


def restart(service: RedisService) -> None:
    service.start()
    wait_ready(service)


def price_rows(sku: str, *minutes: int) -> list[dict[str, Any]]:
    return [
        {"sku": sku, "price": 10.0 + minute, "event_time": T0 + minute * 60_000, "decision_time": T0 + minute * 60_000}
        for minute in minutes
    ]


def stored_prices(settings: Settings, skus: list[str]) -> dict[str, float | None]:
    store = open_store(settings)
    response = store.get_online_features(
        features=["sku_price:price"], entity_rows=[{"sku": sku} for sku in skus], full_feature_names=True
    ).to_dict()
    return dict(zip(skus, response["sku_price__price"], strict=True))


def degraded_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == DEGRADED_LOG]


def test_the_redis_profile_gets_socket_timeouts(redis_settings: Settings) -> None:
    config = load_repo_config(Path(redis_settings.feature_repo), "redis", redis_settings, client_timeouts=True)
    assert "socket_timeout=1.0,socket_connect_timeout=1.0" in config.online_store.connection_string
    kwargs = client(open_store(redis_settings)).connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (TIMEOUT_S, TIMEOUT_S)


def test_the_local_redis_keeps_an_append_only_file(redis_service: RedisService) -> None:
    assert "appendonly yes" in redis_service.config_text()
    assert redis_service.client().config_get("appendonly") == {"appendonly": "yes"}


def test_rows_refused_while_redis_is_down_are_written_newest_per_key_when_it_is_back(
    redis_service: RedisService, redis_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=DEGRADED_LOG)
    clock = Clock()
    outage = Outage("push_decisions", backoff_s=(5.0,), clock=clock)
    writer = BufferedWriter(FeatureWriter(open_store(redis_settings)), "push_decisions", outage=outage)
    assert writer.write("sku_price", price_rows("A", 1) + price_rows("B", 1)) == 2

    redis_service.stop()
    assert writer.write("sku_price", price_rows("A", 3, 2)) == 0  # fails fast, kept
    assert writer.write("sku_price", price_rows("B", 2) + price_rows("C", 4)) == 0  # retry not due: no call
    assert writer.write("sku_price", price_rows("A", 2)) == 0  # older than the kept A@3
    clock.now += 5
    assert writer.write("sku_price", price_rows("C", 5)) == 0  # retried, still down
    assert outage.down and outage.outages == 1 and outage.failed_tries == 2
    assert writer.pending == 3  # one row per sku: A@3, B@2, C@5
    kept = writer.pending_rows("sku_price").set_index("sku")["price"].to_dict()
    assert kept == {"A": 13.0, "B": 12.0, "C": 15.0}
    assert len(degraded_lines(caplog)) == 1, degraded_lines(caplog)  # one line per outage, not per batch

    restart(redis_service)  # the append-only file brought back A@1 and B@1
    assert stored_prices(redis_settings, ["A", "B"]) == {"A": 11.0, "B": 11.0}
    FeatureWriter(open_store(redis_settings)).write("sku_price", price_rows("B", 9))  # newer, by another writer
    assert writer.write("sku_price", price_rows("D", 1)) == 0  # retry not due yet
    clock.now += 5
    assert writer.write("sku_price", price_rows("D", 2)) == 1  # the retry wrote the backlog and this batch
    assert writer.pending == 0 and not outage.down
    assert stored_prices(redis_settings, ["A", "B", "C", "D"]) == {"A": 13.0, "B": 19.0, "C": 15.0, "D": 12.0}
    lines = degraded_lines(caplog)
    assert len(lines) == 2 and "back after" in lines[1] and "wrote 3 kept rows" in lines[1], lines
    assert (writer.deferred, writer.dropped) == (8, 0)  # every batch from the outage on, D@2 too


def test_a_hung_redis_answers_within_the_timeout_and_the_writer_degrades(
    redis_service: RedisService, redis_settings: Settings
) -> None:
    writer = FeatureWriter(open_store(redis_settings))
    buffered = BufferedWriter(writer, "push_sku_price", outage=Outage("push_sku_price", backoff_s=(60.0,)))
    assert buffered.write("sku_price", price_rows("A", 1)) == 1
    pid = redis_service.running_pids()["redis"]
    os.kill(pid, signal.SIGSTOP)  # hung: the kernel still accepts connections, nothing answers
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"did not answer within 1 s") as raised:
            writer.write("sku_price", price_rows("A", 2))  # the CLI's path: one readable line
        assert "\n" not in str(raised.value)
        assert time.monotonic() - started < TIMEOUT_S + 1.5
        started = time.monotonic()
        assert buffered.write("sku_price", price_rows("A", 3)) == 0
        assert buffered.write("sku_price", price_rows("A", 4)) == 0  # no store call until the retry is due
        assert time.monotonic() - started < TIMEOUT_S + 1.5
        assert buffered.pending == 1 and buffered.outage.down
    finally:
        os.kill(pid, signal.SIGCONT)
    buffered.close()  # the last try, at the end of the job
    assert buffered.pending == 0 and stored_prices(redis_settings, ["A"]) == {"A": 14.0}


def test_a_job_worker_opens_the_store_while_redis_is_down(
    redis_service: RedisService, redis_settings: Settings
) -> None:
    redis_service.stop()
    with pytest.raises(StoreUnavailableError, match="cannot reach Redis"):
        open_store(redis_settings)
    writer = BufferedWriter(FeatureWriter(open_store(redis_settings, tolerate_outage=True)), "push")
    assert writer.write("sku_price", price_rows("A", 1)) == 0
    restart(redis_service)
    writer.outage.next_try = 0.0  # the retry is due
    assert writer.write("sku_price", price_rows("B", 1)) == 1
    assert stored_prices(redis_settings, ["A", "B"]) == {"A": 11.0, "B": 11.0}


def catalog_cache(settings: Settings, clock: Clock, refresh_s: float = 30.0) -> CatalogCache:
    from udfs.pricing import STORE_CONTEXT, read_online

    store = open_store(settings, tolerate_outage=True)
    ops = ops_for(store)

    def read(skus: list[str]) -> pd.DataFrame:
        with ops.translate_errors(store):
            return read_online(store, [{"sku": sku} for sku in skus], STORE_CONTEXT)

    columns = [c for view, names in STORE_CONTEXT.items() for c in (*names, f"{view}__event_ms")]
    outage = Outage("price_sku", backoff_s=(5.0,), clock=clock)
    return CatalogCache(read, columns, refresh_s=refresh_s, outage=outage, clock=clock)


def catalog_row(sku: str, base: float, event_ms: int = T0) -> dict[str, Any]:
    return {"sku": sku, "base_price": base, "cost": 5.0, "map_price": None, "ceiling_price": 40.0,
            "category": "coffee", "event_time": event_ms}  # fmt: skip


def test_pricers_price_from_their_catalog_copy_while_redis_is_down(
    redis_service: RedisService, redis_settings: Settings
) -> None:
    FeatureWriter(open_store(redis_settings)).write("sku_catalog", [catalog_row("A", 20.0), catalog_row("B", 30.0)])
    clock = Clock()
    cache = catalog_cache(redis_settings, clock)
    first = cache.lookup(["A", "B", "A"])
    assert first["base_price"].tolist() == [20.0, 30.0, 20.0]
    assert first["sku_catalog__event_ms"].tolist() == [T0, T0, T0]

    redis_service.stop()
    clock.now += 60  # the copy is due for a refresh, the store does not answer
    during = cache.lookup(["B", "A", "Z"])
    assert during["base_price"].tolist()[:2] == [30.0, 20.0]
    assert during.iloc[2].isna().all()  # never read: the empty row an unknown sku gets from the store
    assert cache.outage.down and (cache.served_stale, cache.never_read) == (2, 1)

    restart(redis_service)
    FeatureWriter(open_store(redis_settings)).write("sku_catalog", [catalog_row("A", 25.0, T0 + 1)])
    assert cache.lookup(["A"])["base_price"].tolist() == [20.0]  # the retry is not due yet
    clock.now += 5
    assert cache.lookup(["A"])["base_price"].tolist() == [25.0]  # re-read
    assert not cache.outage.down


def test_the_price_history_answers_from_the_workers_records_and_catches_up(
    redis_service: RedisService, redis_settings: Settings
) -> None:
    clock = Clock()
    history = BufferedPriceHistory(
        PriceHistory(open_store(redis_settings)), Outage("price_sku", backoff_s=(5.0,), clock=clock)
    )
    history.record(["A"], [T0], [10.0])
    redis_service.stop()
    history.record(["A", "A"], [T0 + 60_000, T0 + 120_000], [11.0, 12.0])
    assert history.latest_before(["A", "A", "B"], [T0 + 60_000, T0 + 180_000, T0]) == [10.0, 12.0, None]
    assert history.pending == 2 and history.served_locally == 3
    restart(redis_service)
    clock.now += 5
    assert history.latest_before(["A"], [T0 + 180_000]) == [12.0]  # from the store, after writing what was kept
    assert history.pending == 0
    assert PriceHistory(open_store(redis_settings)).latest_before(["A"], [T0 + 120_000]) == [11.0]


def test_a_corrupt_sqlite_store_degrades_the_job_and_fails_the_cli_on_one_line(
    feature_repo_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=DEGRADED_LOG)
    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path / "state")}).model_copy(
        update={"feature_repo": str(feature_repo_copy), "store_profile": "sqlite"}
    )
    store = open_store(settings)
    writer = BufferedWriter(FeatureWriter(store), "push_decisions", outage=Outage("push_decisions", backoff_s=(0.0,)))
    assert writer.write("sku_price", price_rows("A", 1)) == 1
    database = Path(store.config.online_store.path)
    database = database if database.is_absolute() else feature_repo_copy / database
    for leftover in database.parent.glob(database.name + "-*"):  # the write-ahead log and its index
        leftover.unlink()
    database.write_bytes(b"this is not a database" * 1000)

    assert writer.write("sku_price", price_rows("A", 2)) == 0  # degraded, no raise
    assert writer.pending == 1
    (line,) = degraded_lines(caplog)
    assert "is corrupt" in line and "move the file aside" in line and "pricewave features apply" in line, line
    with pytest.raises(StoreUnavailableError, match="is corrupt") as raised:  # the CLI's path
        open_store(settings)
    assert "\n" not in str(raised.value)
    open_store(settings, tolerate_outage=True)  # a job worker starts degraded
