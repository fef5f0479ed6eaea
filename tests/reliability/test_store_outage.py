"""The online store goes down mid-run: the store degrades, not the job.

One run of the real pricing job (MiniCluster, restart strategy ``none``: a failed task ends the job
FAILED) on the Redis profile, against a private redis-server (append-only file on, as the stack runs
it) on a free port, fed in three parts of ten simulated minutes each:

1. before the job starts; once the job has published a sku price and an offer for every sku (its
   pricers have read every sku's catalog row), the server is stopped;
2. while Redis is down; Redis starts again once the job has priced clicks of this part (so prices
   were decided while it was down, whatever the machine's speed);
3. after Redis is back; then the job is stopped with a draining savepoint (the final watermark
   closes every window and the last transaction commits), as an operator stops it.

Then: the job ran to the end without a failure; it kept pricing while Redis was down; the prices
topic and the decision log hold every decision, once; the store holds, for every sku, the newest
published sku decision and, for every (user, sku) offered to, the newest offer's event time: what
the push UDFs kept during the outage was written when Redis was back. Flink's own metrics (REST,
as a dashboard reads them) showed the outage: ``store_down`` 1 and a backlog, then 0 and 0.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from pricewave.config import Settings
from pricewave.job import build_pipeline, create_table_environment
from pricewave.kafka_io import encode_json, make_producer
from pricewave.privacy import pseudonymize_user
from pricewave.stack.redis import RedisService
from tests.conftest import job_progress
from tests.reliability.harness import (
    T0,
    bounded_options,
    copy_feature_repo,
    decision_log_rows,
    free_port,
    fresh_topics,
    read_topic,
    wait_ready,
)

pytestmark = pytest.mark.integration

SKUS = [f"out-{n}" for n in range(6)]
KINDS = ["view", "view", "add_to_cart", "view", "purchase", "click"]
PART = 600  # clicks per part, one per simulated second: ten minutes
LIVE_MINIMUM = 120  # clicks the live part sends at least (CI: a fast recovery stopped it at 45)
STORE_METRICS = ("store_down", "store_backlog_rows", "store_rows_dropped")


def click(n: int, rng: random.Random) -> dict[str, Any]:
    kind = KINDS[n % len(KINDS)]
    record: dict[str, Any] = {
        "event_id": f"o{n}",
        "event_type": kind,
        "user_key": pseudonymize_user(f"outage-user-{n % 20}", b"reliability"),
        "session_id": f"s{n % 20}",
        "sku": SKUS[rng.randrange(len(SKUS))],
        "price_seen": round(10 + rng.random() * 10, 2),
        "channel": "web",
        "event_time": T0 + n * 1000,
    }
    if kind in ("add_to_cart", "purchase"):
        record["quantity"] = 1
    return record


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, client: Any, rest_url: str) -> None:
    """Wait for ``condition``; fail at once, with the job's failure, when the job ended instead.

    On a timeout the message shows where the job's records and watermarks stood.
    """
    deadline = time.monotonic() + timeout_s
    shown_at = time.monotonic()
    while not condition():
        if time.monotonic() - shown_at > 60:  # progress for a reader of ``pytest -s``
            print(f"[store outage] waiting for {what}:\n{job_progress(rest_url, str(client.get_job_id()))}")
            shown_at = time.monotonic()
        job_status = client.get_job_status().result()
        status = str(getattr(job_status, "name", job_status))
        if status in ("FAILED", "CANCELED", "FINISHED"):
            client.get_job_execution_result().result()  # raises the job's failure cause, if any
            raise AssertionError(f"{what}: the job ended ({status}) first")
        if time.monotonic() > deadline:
            progress = job_progress(rest_url, str(client.get_job_id()))
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s (job {status})\n{progress}")
        time.sleep(0.2)


@dataclass
class Outage:
    """Stops Redis once ``due()`` holds (a thread); :meth:`end` starts it again."""

    service: RedisService
    due: Callable[[], bool]
    stopped_at: float | None = None
    started_at: float | None = None
    errors: list[str] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            while not self.due():
                if self.done.is_set():
                    self.errors.append("the job ended before the outage was due")
                    return
                time.sleep(0.5)
            self.service.stop()  # SIGTERM: a clean shutdown, the append-only file is synced
            self.stopped_at = time.time()
            self.stopped.set()
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))

    def end(self) -> None:
        self.service.start()
        wait_ready(self.service)
        self.started_at = time.time()


class MetricWatch(threading.Thread):
    """Samples the job's ``pricewave`` store metrics on the MiniCluster's REST API (sum over vertices)."""

    def __init__(self, rest_url: str, job_id: str) -> None:
        super().__init__(daemon=True)
        self.rest_url, self.job_id = rest_url, job_id
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._halt = threading.Event()

    def sample(self) -> dict[str, int]:
        totals = dict.fromkeys(STORE_METRICS, 0)
        job = requests.get(f"{self.rest_url}/jobs/{self.job_id}", timeout=2).json()
        for vertex in job["vertices"]:
            base = f"{self.rest_url}/jobs/{self.job_id}/vertices/{vertex['id']}/subtasks/metrics"
            names = [m["id"] for m in requests.get(base, timeout=2).json() if m["id"].endswith(STORE_METRICS)]
            if names:
                for metric in requests.get(base, params={"get": ",".join(names)}, timeout=2).json():
                    name = metric["id"].rsplit(".", 1)[-1]
                    totals[name] += int(float(metric.get("max", metric.get("sum", 0))))
        return totals

    def recovered_since(self, since: float) -> bool:
        """True when a sample taken a second after ``since`` shows the store up and no backlog."""
        when, latest = self.samples[-1] if self.samples else (0.0, {})
        return when > since + 1.0 and latest.get("store_down") == 0 and latest.get("store_backlog_rows") == 0

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                self.samples.append((time.time(), self.sample()))
            self._halt.wait(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


@dataclass
class OutageRun:
    settings: Settings
    outage: Outage
    finished_at: float
    prices: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    wall_s: float
    metrics: list[tuple[float, dict[str, int]]]


def _stop_draining(client: Any, directory: Path) -> None:
    """Stop with a draining savepoint: the final watermark fires every window, the last transaction commits."""
    from pyflink.java_gateway import get_gateway

    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    client._j_job_client.stopWithSavepoint(True, directory.as_uri(), canonical).get()


def _published_for_every_sku(settings: Settings) -> Callable[[], bool]:
    """True once the prices topic holds a sku price and an offer for every sku (read uncommitted)."""

    def check() -> bool:
        records = read_topic(settings, settings.topics.prices, read_committed=False, quiet_s=0.5)
        decisions = [json.loads(r.value) for r in records]
        return all({(d["kind"], d["sku"]) for d in decisions} >= {("sku", sku), ("offer", sku)} for sku in SKUS)

    return check


def _priced_up_to(settings: Settings, event_time_ms: int) -> Callable[[], bool]:
    """True once the job decided a price for a click at or after ``event_time_ms`` (read uncommitted)."""

    def check() -> bool:
        records = read_topic(settings, settings.topics.prices, read_committed=False)
        return any(json.loads(r.value)["event_time"] >= event_time_ms for r in records)

    return check


@pytest.fixture(scope="module")
def outage_run(
    kafka_stack: Settings, applied_feature_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OutageRun]:
    from pricewave.feature_store import FeatureWriter, open_store

    base = tmp_path_factory.mktemp("store_outage")
    repo = copy_feature_repo(applied_feature_repo, base / "feature_repo")
    redis = kafka_stack.redis.model_copy(update={"port": free_port(), "timeout_s": 1.0})
    settings = fresh_topics(kafka_stack).model_copy(
        update={"feature_repo": str(repo), "store_profile": "redis", "redis": redis}
    )
    service = RedisService(settings.model_copy(update={"state_dir": base / "state"}))
    service.install()
    service.start()
    rng = random.Random(17)
    producer = make_producer(settings, linger_ms=20)

    def feed(part: int, until: Callable[[], bool] | None = None) -> int:
        """Send one part and return the number of the last click sent.

        With ``until``, as live traffic (15 clicks a second) that stops early once it holds, but never
        before ``LIVE_MINIMUM`` clicks: a caller waits for a price two minutes of event time later than
        the part's start, which takes clicks after it to move the watermark there.
        """
        n = part * PART
        for n in range(part * PART, (part + 1) * PART):
            producer.send(settings.topics.clicks, encode_json(click(n, rng)), key=b"k")
            if until is not None and n % 15 == 14:
                producer.flush()
                if n - part * PART >= LIVE_MINIMUM and until():
                    break
                time.sleep(1.0)
        producer.flush()
        return n

    try:
        wait_ready(service)
        catalog = [
            {"sku": sku, "base_price": 19.99, "cost": 8.0 + n, "map_price": None, "ceiling_price": 39.0,
             "category": "coffee", "event_time": T0 - 86_400_000}
            for n, sku in enumerate(SKUS)
        ]  # fmt: skip
        FeatureWriter(open_store(settings)).write("sku_catalog", catalog)
        feed(0)
        # Redis goes down once the pricers have read the catalog row of every sku (they have
        # published a sku price and an offer for each): a pricer keeps its copy through an outage,
        # but a sku it never read has no floor, so it prices nothing for it until the store is back.
        outage = Outage(service, due=_published_for_every_sku(settings))
        thread = threading.Thread(target=outage.run, name="redis-outage", daemon=True)
        rest_port = free_port()
        options = bounded_options(
            decision_log_dir=str(base / "decisions"),
            bounded=False,
            checkpoint_interval_s=1.0,
            extra_config={
                "rest.bind-port": str(rest_port),
                "rest.address": "127.0.0.1",
                "metrics.fetcher.update-interval": "500 ms",  # REST serves fresh metric values
            },
        )
        started = time.monotonic()
        t_env = create_table_environment(settings, options)
        thread.start()
        client = build_pipeline(t_env, settings, options).execute().get_job_client()
        assert client is not None
        rest_url = f"http://127.0.0.1:{rest_port}"
        watch = MetricWatch(rest_url, str(client.get_job_id()))
        watch.start()
        try:
            assert outage.stopped.wait(300), f"Redis was never stopped: {outage.errors}"
            feed(1)  # while Redis is down
            during = _priced_up_to(settings, T0 + (PART + 60) * 1000)
            wait_for(during, 300, "prices for clicks sent during the outage", client, rest_url)
            outage.end()
            # After Redis is back, traffic goes on until the push UDFs have written what they kept: a
            # backlog is written with the next batch once the retry is due (at most 30 s after).
            last = feed(2, until=lambda: watch.recovered_since(outage.started_at or 0.0))
            after = _priced_up_to(settings, T0 + (last - 60) * 1000)
            wait_for(after, 300, "prices for clicks sent after it", client, rest_url)
            _stop_draining(client, base / "savepoints")
            client.get_job_execution_result().result()  # raises if the job failed
            finished_at = time.time()
        finally:
            outage.done.set()
            thread.join(timeout=60)
            watch.stop()
        wall_s = time.monotonic() - started
        yield OutageRun(
            settings=settings,
            outage=outage,
            finished_at=finished_at,
            prices=[json.loads(r.value) for r in read_topic(settings, settings.topics.prices)],
            decisions=decision_log_rows(base / "decisions"),
            wall_s=wall_s,
            metrics=watch.samples,
        )
    finally:
        producer.close()
        service.stop()


def test_the_job_runs_without_a_failure_and_prices_through_the_outage(outage_run: OutageRun) -> None:
    outage = outage_run.outage
    assert not outage.errors, outage.errors
    assert outage.stopped_at is not None and outage.started_at is not None
    during = [
        d for d in outage_run.decisions if outage.stopped_at * 1000 <= d["decision_time"] <= outage.started_at * 1000
    ]
    assert during, "no decision was made while Redis was down"
    # ...and each of them was a price (from the pricer's catalog copy), published
    assert all(d["price"] is not None for d in during), [d for d in during if d["price"] is None][:3]
    print(
        f"\nstore outage: job {outage_run.wall_s:.1f} s, Redis down {outage.started_at - outage.stopped_at:.1f} s, "
        f"{len(during)} of {len(outage_run.decisions)} decisions made while it was down"
    )


def test_flink_metrics_show_the_outage_and_the_recovery(outage_run: OutageRun) -> None:
    outage = outage_run.outage
    assert outage.stopped_at is not None and outage.started_at is not None
    after_stop = [m for when, m in outage_run.metrics if when >= outage.stopped_at]
    assert any(m["store_down"] > 0 for m in after_stop), outage_run.metrics[-5:]
    assert any(m["store_backlog_rows"] > 0 for m in after_stop), outage_run.metrics[-5:]
    back = [m for when, m in outage_run.metrics if when > outage.started_at + 1.0]
    # while the job still ran after Redis was back: the store up again, the backlog written, nothing dropped
    assert back and back[-1]["store_down"] == 0 and back[-1]["store_backlog_rows"] == 0, back[-3:]
    assert all(m["store_rows_dropped"] == 0 for _, m in outage_run.metrics)


def test_the_prices_topic_and_the_decision_log_hold_every_decision_once(outage_run: OutageRun) -> None:
    log_ids = [d["decision_id"] for d in outage_run.decisions]
    published = [d["decision_id"] for d in outage_run.decisions if d["price"] is not None]
    topic_ids = [d["decision_id"] for d in outage_run.prices]
    assert len(log_ids) == len(set(log_ids)) and len(topic_ids) == len(set(topic_ids))
    assert sorted(topic_ids) == sorted(published)
    sku_windows = {(d["sku"], d["event_time"]) for d in outage_run.decisions if d["kind"] == "sku"}
    assert {d["sku"] for d in outage_run.prices} == set(SKUS)
    assert len(sku_windows) >= len(SKUS) * 25  # every sku priced (nearly) each minute
    assert sum(d["kind"] == "offer" for d in outage_run.prices) > 500


def test_the_store_holds_the_newest_published_price_after_redis_is_back(outage_run: OutageRun) -> None:
    from pricewave.feature_store import FeatureWriter, open_store
    from pricewave.feature_store.stores import feast_millis, online_read

    newest_sku: dict[str, dict[str, Any]] = {}
    newest_offer: dict[tuple[str, str], int] = {}
    for decision in outage_run.prices:
        if decision["kind"] == "sku":
            if decision["event_time"] > newest_sku.get(decision["sku"], {}).get("event_time", 0):
                newest_sku[decision["sku"]] = decision
        else:
            pair = (decision["user_key"], decision["sku"])
            newest_offer[pair] = max(newest_offer.get(pair, 0), decision["event_time"])
    assert set(newest_sku) == set(SKUS) and newest_offer  # else the comparisons below prove nothing
    store = open_store(outage_run.settings)
    writer = FeatureWriter(store)

    skus = sorted(newest_sku)
    keys = [writer.entity_key("sku_price", [sku]) for sku in skus]
    stored = online_read(store, store.get_feature_view("sku_price"), keys, ["decision_id"])
    held = {
        sku: (feast_millis(when), values["decision_id"].string_val if values else None)
        for sku, (when, values) in zip(skus, stored, strict=True)
    }
    assert held == {sku: (newest_sku[sku]["event_time"], newest_sku[sku]["decision_id"]) for sku in skus}

    pairs = sorted(newest_offer)
    names = writer.join_keys("user_offer")
    keys = [
        writer.entity_key("user_offer", [dict(zip(("user_key", "sku"), pair, strict=True))[n] for n in names])
        for pair in pairs
    ]
    stored = online_read(store, store.get_feature_view("user_offer"), keys, ["price"])
    assert {pair: feast_millis(when) for pair, (when, _) in zip(pairs, stored, strict=True)} == newest_offer
