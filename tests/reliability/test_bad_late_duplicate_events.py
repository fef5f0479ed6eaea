"""10,000 malformed / extreme events, late events and duplicates through the real pricing job.

One bounded run of the job (MiniCluster, fixed-delay restarts; the job's state and Flink's
``numRestarts`` are read from the MiniCluster's REST API while it runs, so a failure the job
recovered from still fails the test) over single-partition topics that hold:

* a normal click stream (2,400 clicks over 40 minutes, 6 skus) with competitor prices and reviews,
* 10,000 bad events mixed in at seeded random places: truncated, wrong-schema, wrong-encoding,
  extreme values (NaN, ±Infinity, ±1e308, 1e400, negative and zero prices, far past and far future
  timestamps, timestamps 10 and 60 minutes ahead of the wall clock, 2**64), 700 KB payloads and
  null values (tombstones),
* 40 late events (10 minutes behind the stream when they arrive), 30 out-of-order events inside the
  5 s bound (not late), and 60 duplicates (same event_id re-sent).

1 MB records get their own run (:func:`test_one_megabyte_record_is_dead_lettered`): their dead
letter is larger than what the job's dead-letter sink may send, so the job fails (see RELIABILITY.md).

Then: every bad event is in ``dlq`` exactly once, by source offset, with the reason the schema
checker gives; every late event is there with reason ``late``; nothing else is; no decision names
a fuzz-only sku; and the demand each decision saw equals an independent pandas count over the
normal events (late ones excluded, duplicates once), so no bad, late or repeated event was counted.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from pricewave.config import Settings
from pricewave.job import build_pipeline, create_table_environment
from pricewave.job.sources import record_skew_reason
from pricewave.kafka_io import encode_json, make_producer
from pricewave.privacy import pseudonymize_raw_ids, pseudonymize_user
from pricewave.schemas import check_event
from tests.reliability.harness import (
    MINUTE,
    T0,
    bounded_options,
    decision_log_rows,
    free_port,
    fresh_topics,
    read_topic,
)

pytestmark = pytest.mark.integration

SKUS = [f"sku-{n}" for n in range(6)]
FUZZ_SKUS = [f"FUZZ-{n}" for n in range(5)]
KINDS = ["view", "view", "click", "view", "add_to_cart", "view", "purchase", "search"]
N_CLICKS = 2400  # one per simulated second: 40 minutes
N_BAD = 10_000
N_LATE = 40
N_OUT_OF_ORDER = 30
N_DUPLICATES = 60
ONE_MB = 1_000_000
# Large records in the fuzz stream; 1 MB ones (dead letters above the producer's default 1 MiB
# request size) have their own test below.
LARGE = 700_000
SCHEMA_OF_ROLE = {"clicks": "click_event", "competitor_prices": "competitor_price", "reviews": "review"}


def click(n: int, second: float, rng: random.Random) -> dict[str, Any]:
    kind = KINDS[n % len(KINDS)]
    record: dict[str, Any] = {
        "event_id": f"c{n}",
        "event_type": kind,
        "user_key": pseudonymize_user(f"fuzz-user-{n % 25}", b"reliability"),
        "session_id": f"s{n % 25}",
        "sku": SKUS[rng.randrange(len(SKUS))],
        "price_seen": round(5 + rng.random() * 20, 2),
        "channel": "web",
        "event_time": T0 + int(second * 1000),
    }
    if kind in ("add_to_cart", "purchase"):
        record["quantity"] = 1
    if kind == "search":
        record["query"] = "coffee deal"
    return record


def competitor(n: int, second: float) -> dict[str, Any]:
    return {
        "event_id": f"p{n}",
        "sku": SKUS[n % len(SKUS)],
        "competitor": ("acme", "globex")[n % 2],
        "price": 9.5 + n % 7,
        "in_stock": n % 5 != 0,
        "event_time": T0 + int(second * 1000),
    }


def review(n: int, second: float) -> dict[str, Any]:
    return {
        "review_id": f"r{n}",
        "sku": SKUS[n % len(SKUS)],
        "rating": 1 + n % 5,
        "text": "fine coffee",
        "event_time": T0 + int(second * 1000),
    }


def _json(record: Any) -> bytes:
    return json.dumps(record, separators=(",", ":"), allow_nan=True).encode()


def bad_value(role: str, good: dict[str, Any], k: int, rng: random.Random) -> bytes | None:
    """The k-th bad variant of a valid record ``good`` of topic ``role`` (None: a null value)."""
    value_field = {"clicks": "price_seen", "competitor_prices": "price", "reviews": "rating"}[role]
    id_field = "review_id" if role == "reviews" else "event_id"
    rec = {**good, id_field: f"bad-{k}"}
    if k % 3 == 0:
        rec["sku"] = FUZZ_SKUS[k % len(FUZZ_SKUS)]  # a sku only bad events name: it must never get a price
    raw = _json(rec)
    # A producer whose clock runs ahead: valid for the schema (which allows a day), refused by the
    # job (5 minutes). Accepted, it would move the watermark past the whole stream and make every
    # later record late.
    wall_ms = int(time.time() * 1000)
    variants: list[Any] = [
        lambda: raw[: rng.randint(1, len(raw) - 1)],  # truncated
        lambda: b"",
        lambda: None,  # a tombstone: null value
        lambda: b"[1,2,3]",
        lambda: b'"just a string"',
        lambda: b"null",
        lambda: b"{}",
        lambda: _json({k2: v for k2, v in rec.items() if k2 != "sku"}),  # missing field
        # (An unknown field alone is no fault: the input schemas are fully compatible.)
        lambda: _json({**rec, "raw_user_id": "fuzz-user-1", value_field: None}),  # a raw id beside a null value
        lambda: _json({**rec, value_field: str(rec[value_field])}),  # wrong type
        lambda: _json({**rec, "event_time": str(rec["event_time"])}),
        lambda: _json({**rec, "sku": 12345}),
        lambda: _json({**rec, "sku": "a b/c"}),
        lambda: _json({**rec, "event_time": float(rec["event_time"]) + 0.5}),
        lambda: raw.replace(b"{", b"{\xe9", 1),  # latin-1 byte, not UTF-8
        lambda: json.dumps(rec).encode("utf-16"),  # UTF-16 with a byte order mark
        lambda: b"\xef\xbb\xbf" + raw,  # UTF-8 byte order mark
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))),  # noise
        lambda: raw.replace(b'"sku":"', b'"sku":"\\ud800', 1),  # lone surrogate
        lambda: _json({**rec, value_field: float("nan")}),  # NaN token
        lambda: _json({**rec, value_field: float("inf")}),
        lambda: _json({**rec, value_field: float("-inf")}),
        lambda: _json({**rec, value_field: 1e308}),
        lambda: _json({**rec, value_field: -1e308}),
        lambda: raw.replace(_json(rec[value_field]), b"1e400", 1),
        lambda: _json({**rec, value_field: -abs(rec[value_field]) - 1}),  # negative
        lambda: _json({**rec, value_field: 0}),  # zero
        lambda: _json({**rec, "event_time": 0}),  # 1970
        lambda: _json({**rec, "event_time": -1}),
        lambda: _json({**rec, "event_time": 946_684_799_999}),  # just before 2000
        lambda: _json({**rec, "event_time": 10**16}),  # year 318,857
        lambda: _json({**rec, "event_time": 4_102_444_800_000}),  # 2100
        lambda: _json({**rec, "event_time": 2**64}),  # beyond 64 bits
        lambda: _json({**rec, "event_time": 10**400}),
        lambda: _json({**rec, "event_time": None}),
        lambda: _json({**rec, "sku": "x" * 65}),
        lambda: _json({**rec, id_field: ""}),
        lambda: raw[:-1] + b',"sku":"dup"}',  # duplicate key
        lambda: b"{" * 100_000,  # nested too deeply (and > 64 KiB)
        lambda: raw + b" trailing",
        lambda: _json({**rec, "event_time": wall_ms + 10 * MINUTE}),  # clock 10 minutes ahead
        lambda: _json({**rec, "event_time": wall_ms + 60 * MINUTE}),  # an hour ahead (a time-zone bug)
    ]
    kind = k % len(variants)
    value = variants[kind]()
    if role == "clicks" and k % 2000 == 1:  # ~700 KB records: a valid shape with a huge query
        value = _json({**rec, "query": "q" * LARGE})
    elif role == "reviews" and k % 500 == 7:  # and some huge review texts
        value = _json({**rec, "text": "t" * (ONE_MB // 4)})
    ahead_of_the_clock = kind >= len(variants) - 2
    if value is not None and not ahead_of_the_clock and check_event(SCHEMA_OF_ROLE[role], value)[1] is None:
        value = raw[: len(raw) // 2]  # a mutation that happened to stay valid (e.g. inside an id): truncate
    return value


@dataclass
class Produced:
    """What went into each topic: offsets of good, bad, late and duplicate records."""

    good: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    bad: dict[str, dict[int, bytes | None]] = field(default_factory=dict)
    late: dict[str, set[int]] = field(default_factory=dict)
    duplicates: int = 0


def produce_stream(settings: Settings, seed: int = 20260101) -> Produced:
    """Write the normal stream with bad, late, out-of-order and duplicate records mixed in."""
    rng = random.Random(seed)
    plan: dict[str, list[tuple[str, Any]]] = {role: [] for role in SCHEMA_OF_ROLE}
    bad_slots = Counter(rng.choices(["clicks", "competitor_prices", "reviews"], weights=[8, 1, 1], k=N_BAD))
    clicks = [click(n, n, rng) for n in range(N_CLICKS)]
    late_at = set(rng.sample(range(700, N_CLICKS), N_LATE))
    out_of_order_at = set(rng.sample(range(100, N_CLICKS), N_OUT_OF_ORDER)) - late_at
    duplicate_at = set(rng.sample(range(N_CLICKS), N_DUPLICATES))
    for n, record in enumerate(clicks):
        if n in out_of_order_at:
            record["event_time"] -= 3000  # inside the 5 s out-of-orderness: on time
        plan["clicks"].append(("good", record))
        if n in duplicate_at:
            plan["clicks"].append(("good", dict(record)))  # same event_id and event_time
        if n in late_at:
            late = click(100_000 + n, n - 600, rng)  # 10 minutes behind the stream
            plan["clicks"].append(("late", late))
    for n in range(N_CLICKS // 10):
        plan["competitor_prices"].append(("good", competitor(n, n * 10)))
    for n in range(N_CLICKS // 60):
        plan["reviews"].append(("good", review(n, n * 60)))
    k = 0
    for role, count in bad_slots.items():
        goods = [item for item in plan[role] if item[0] == "good"]
        for _ in range(count):
            # A bad record carries the event time of a record already sent, so it never runs ahead.
            position = rng.randrange(1, len(plan[role]))
            template = plan[role][position - 1][1]
            template = template if isinstance(template, dict) else goods[0][1]
            plan[role].insert(position, ("bad", bad_value(role, template, k, rng)))
            k += 1
    produced = Produced()
    producer = make_producer(settings, max_request_size=2 * 1024 * 1024 - 4096, linger_ms=20)
    for role, items in plan.items():
        topic = getattr(settings.topics, role)
        futures = []
        for kind, payload in items:
            value = payload if kind == "bad" else encode_json(payload)
            futures.append((kind, payload, producer.send(topic, value=value, key=b"k")))  # a tombstone needs a key
        producer.flush()
        good = produced.good.setdefault(role, {})
        bad = produced.bad.setdefault(role, {})
        late_offsets: set[int] = set()
        for kind, payload, future in futures:
            offset = future.get(timeout=60).offset
            if kind == "good":
                good[offset] = payload
            elif kind == "late":
                late_offsets.add(offset)
            else:
                bad[offset] = payload
        produced.late[role] = late_offsets
    producer.close()
    produced.duplicates = len(duplicate_at)
    return produced


class JobWatch(threading.Thread):
    """Polls a job's state and ``numRestarts`` metric on a Flink REST API while the job runs."""

    def __init__(self, rest_url: str, job_id: str, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.rest_url, self.job_id, self.interval_s = rest_url, job_id, interval_s
        self.states: list[str] = []  # each distinct state in the order seen
        self.restarts: list[int] = []  # every numRestarts sample
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                state = requests.get(f"{self.rest_url}/jobs/{self.job_id}", timeout=2).json()["state"]
                if not self.states or self.states[-1] != state:
                    self.states.append(state)
                metrics = requests.get(f"{self.rest_url}/jobs/{self.job_id}/metrics?get=numRestarts", timeout=2)
                for metric in metrics.json():
                    if metric["id"] == "numRestarts":
                        self.restarts.append(int(metric["value"]))
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


@dataclass
class RunResult:
    settings: Settings
    produced: Produced
    job_status: str
    job_states: list[str]
    restarts: list[int]
    dead_letters: list[dict[str, Any]]
    prices: list[dict[str, Any]]
    decisions: list[dict[str, Any]]


@pytest.fixture(scope="module")
def fuzz_run(
    kafka_stack: Settings, applied_feature_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunResult]:
    import shutil

    from pricewave.feature_store import FeatureWriter, open_store

    base = tmp_path_factory.mktemp("fuzz")
    repo = base / "feature_repo"
    shutil.copytree(applied_feature_repo, repo)
    settings = fresh_topics(kafka_stack).model_copy(update={"feature_repo": str(repo)})
    catalog = [
        {"sku": sku, "base_price": 19.99, "cost": 8.0 + n, "map_price": None, "ceiling_price": 39.0,
         "category": "coffee", "event_time": T0 - 86_400_000}
        for n, sku in enumerate(SKUS)
    ]  # fmt: skip
    FeatureWriter(open_store(settings)).write("sku_catalog", catalog)
    produced = produce_stream(settings)

    # Restarts allowed (fixed delay), so that a failure the job recovers from still shows: as a
    # restart counted by Flink, read from the MiniCluster's REST API while the job runs.
    rest_port = free_port()
    options = bounded_options(
        decision_log_dir=str(base / "decisions"),
        restart_strategy="fixed-delay",
        extra_config={
            "restart-strategy.fixed-delay.attempts": "3",
            "restart-strategy.fixed-delay.delay": "1 s",
            "rest.bind-port": str(rest_port),
            "rest.address": "127.0.0.1",
        },
    )
    t_env = create_table_environment(settings, options)
    client = build_pipeline(t_env, settings, options).execute().get_job_client()
    assert client is not None
    watch = JobWatch(f"http://127.0.0.1:{rest_port}", str(client.get_job_id()))
    watch.start()
    try:
        client.get_job_execution_result().result()  # raises when the job failed for good
        status = "FINISHED"
    except Exception as exc:  # the job's own error (its root cause), for the assertion message
        lines = str(exc).splitlines() or [type(exc).__name__]
        causes = [line.strip() for line in lines if line.strip().startswith("Caused by:")]
        status = f"FAILED: {(causes or lines)[-1][:300]}"
    finally:
        watch.stop()
    yield RunResult(
        settings=settings,
        produced=produced,
        job_status=status,
        job_states=watch.states,
        restarts=watch.restarts,
        dead_letters=[json.loads(r.value) for r in read_topic(settings, settings.topics.dlq, read_committed=False)],
        prices=[json.loads(r.value) for r in read_topic(settings, settings.topics.prices)],
        decisions=decision_log_rows(base / "decisions"),
    )


def test_job_survives_10000_bad_events_without_a_restart(fuzz_run: RunResult) -> None:
    assert sum(len(bad) for bad in fuzz_run.produced.bad.values()) == N_BAD
    assert fuzz_run.job_status == "FINISHED", fuzz_run.job_status
    # Seen on the job's REST API while it ran: running, never restarting or failing, 0 restarts.
    print(f"\n[reliability] fuzz job states {fuzz_run.job_states}, {len(fuzz_run.restarts)} numRestarts samples")
    assert "RUNNING" in fuzz_run.job_states and fuzz_run.restarts, "the job's REST API was never read"
    assert not {"RESTARTING", "FAILING", "FAILED"} & set(fuzz_run.job_states), fuzz_run.job_states
    assert max(fuzz_run.restarts) == 0, f"the job restarted {max(fuzz_run.restarts)} times"


def test_every_bad_event_is_dead_lettered_once_with_its_reason(fuzz_run: RunResult) -> None:
    settings, produced = fuzz_run.settings, fuzz_run.produced
    by_source: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for letter in fuzz_run.dead_letters:
        by_source.setdefault((letter["source_topic"], letter["offset"]), []).append(letter)
    assert all(len(letters) == 1 for letters in by_source.values()), "a record was dead-lettered twice"
    expected_keys = set()
    for role, bad in produced.bad.items():
        topic = getattr(settings.topics, role)
        for offset, raw in bad.items():
            expected_keys.add((topic, offset))
            letters = by_source.get((topic, offset))
            assert letters, f"bad record {topic}@{offset} is not in the dead-letter topic"
            letter = letters[0]
            _, reason = check_event(SCHEMA_OF_ROLE[role], raw or b"")
            # Valid for the schema: a record from a clock running ahead, refused by the job's source.
            expected = reason or "bad_timestamp: event_time more than 300 s ahead of the job's clock"
            assert letter["reason"].split(":")[0] == expected.split(":")[0], (letter["reason"], expected)
            if reason is None:  # ahead of the job's clock, or (first) of its Kafka record timestamp
                ahead = {expected, record_skew_reason(bounded_options())}
                assert letter["reason"] in ahead, (letter["reason"], ahead)
            assert letter["raw_size"] == len(raw or b"")
            # Kept as received, except raw user ids (the "raw_user_id" variant): their pseudonyms.
            kept, fields = pseudonymize_raw_ids(raw or b"", settings.user_key_secret)
            assert letter["pseudonymized"] == (",".join(dict.fromkeys(fields)) or None)
            assert kept.startswith(base64.b64decode(letter["raw_b64"]))
    for role, late in produced.late.items():
        expected_keys |= {(getattr(settings.topics, role), offset) for offset in late}
    assert set(by_source) == expected_keys  # nothing else: no good record was dead-lettered
    reasons = Counter(letter["reason"].split(":")[0] for letter in fuzz_run.dead_letters)
    assert sum(reasons.values()) == N_BAD + N_LATE


def test_every_late_event_is_counted_and_routed_as_late(fuzz_run: RunResult) -> None:
    topic = fuzz_run.settings.topics.clicks
    late_letters = {d["offset"] for d in fuzz_run.dead_letters if d["reason"] == "late"}
    assert len(fuzz_run.produced.late["clicks"]) == N_LATE
    assert late_letters == fuzz_run.produced.late["clicks"]
    assert all(d["source_topic"] == topic for d in fuzz_run.dead_letters if d["reason"] == "late")


def test_no_price_comes_from_a_bad_event_and_normal_skus_are_priced(fuzz_run: RunResult) -> None:
    priced = {decision["sku"] for decision in fuzz_run.prices}
    assert priced == set(SKUS)
    assert not {row["sku"] for row in fuzz_run.decisions} & set(FUZZ_SKUS)


def test_demand_counts_exclude_bad_late_and_duplicate_events(fuzz_run: RunResult) -> None:
    """Each decision's demand features equal a pandas count over the normal events only."""
    clicks = pd.DataFrame(list(fuzz_run.produced.good["clicks"].values()))
    unique = clicks.drop_duplicates("event_id")
    assert len(clicks) - len(unique) == N_DUPLICATES
    names = ("views_5m", "carts_5m", "purchases_5m", "views_1h", "purchases_1h")
    expected: dict[tuple[str, int], dict[str, int]] = {}
    first = T0 // MINUTE * MINUTE
    last = int(unique.event_time.max()) + 11 * MINUTE
    for end in range(first + MINUTE, last, MINUTE):
        window = unique[(unique.event_time >= end - 10 * MINUTE) & (unique.event_time < end)]
        recent = window[window.event_time >= end - 2 * MINUTE]
        for sku, group in window.groupby("sku"):
            short = recent[recent.sku == sku]
            expected[(str(sku), end - 1)] = {
                "views_5m": int((short.event_type == "view").sum()),
                "carts_5m": int((short.event_type == "add_to_cart").sum()),
                "purchases_5m": int((short.event_type == "purchase").sum()),
                "views_1h": int((group.event_type == "view").sum()),
                "purchases_1h": int((group.event_type == "purchase").sum()),
            }
    seen = {}
    for row in fuzz_run.decisions:
        if row["kind"] != "sku":
            continue  # personalized offers are priced per event, not per window
        features = json.loads(row["features_json"])
        seen[(row["sku"], int(row["event_time"]))] = {name: int(features[name]) for name in names}
    assert seen == expected
    # And what reached the prices topic is one decision per (sku, window), none twice.
    ids = [decision["decision_id"] for decision in fuzz_run.prices if decision["kind"] == "sku"]
    assert len(ids) == len(set(ids)) == len(expected)


def test_one_megabyte_record_is_dead_lettered(
    kafka_stack: Settings, applied_feature_repo: Path, tmp_path: Path
) -> None:
    import shutil

    repo = tmp_path / "feature_repo"
    shutil.copytree(applied_feature_repo, repo)
    settings = fresh_topics(kafka_stack).model_copy(update={"feature_repo": str(repo)})
    rng = random.Random(1)
    producer = make_producer(settings, max_request_size=2 * 1024 * 1024 - 4096)
    topic = settings.topics.clicks
    huge = [_json({**click(0, 0, rng), "query": "q" * ONE_MB}), bytes(rng.getrandbits(8) for _ in range(ONE_MB))]
    for n in range(20):
        producer.send(topic, encode_json(click(n, n, rng)), key=b"k")
        if n in (5, 10):
            producer.send(topic, huge[n // 10], key=b"k")
    producer.flush()
    producer.close()
    options = bounded_options(decision_log_dir=str(tmp_path / "decisions"))
    t_env = create_table_environment(settings, options)
    build_pipeline(t_env, settings, options).execute().wait()
    letters = [json.loads(r.value) for r in read_topic(settings, settings.topics.dlq, read_committed=False)]
    assert sorted(letter["raw_size"] for letter in letters) == sorted(len(raw) for raw in huge)
    assert all(letter["reason"].startswith("too_large") for letter in letters)
