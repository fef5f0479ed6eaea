"""The pricing job on a real MiniCluster against the real broker (bounded runs over fresh topics)."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from pricewave.config import Settings
from pricewave.errors import ConfigError
from pricewave.job import JobOptions, build_pipeline, create_table_environment
from pricewave.job.environment import PYTHON_WORKER_MODE_VARIABLE
from pricewave.job.sources import source_ddl
from pricewave.kafka_io import encode_json, ensure_topics, make_producer, send_heartbeats
from pricewave.privacy import pseudonymize_user
from tests.conftest import consume_all
from tests.reliability.harness import bounded_options

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000


@pytest.fixture
def job_settings(kafka_stack: Settings, feature_repo_copy: object) -> Iterator[Settings]:
    """Fresh single-partition topics (exact watermark order) and a private applied feature repo."""
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"test-job-{role}-{suffix}" for role in ("clicks", "competitor_prices", "reviews", "prices", "dlq")}
    ensure_topics(kafka_stack, names.values(), partitions=1)
    topics = kafka_stack.topics.model_copy(update=names)
    yield kafka_stack.model_copy(update={"topics": topics, "feature_repo": str(feature_repo_copy)})


def click(n: int, sku: str, kind: str, minute: float, user: str = "u1") -> dict[str, object]:
    return {
        "event_id": f"e{n}",
        "event_type": kind,
        "user_key": pseudonymize_user(user, b"test"),
        "session_id": f"s-{user}",
        "sku": sku,
        "price_seen": 10.0,
        "channel": "web",
        "event_time": T0 + int(minute * MINUTE),
    }


def write_catalog_row(settings: Settings, sku: str) -> None:
    """A catalog row, so that the kill switch publishes a price for each window (it needs a floor)."""
    from pricewave.feature_store import FeatureWriter, open_store

    row = {"sku": sku, "base_price": 10.0, "cost": 6.0, "map_price": None, "ceiling_price": 15.0}
    FeatureWriter(open_store(settings)).write("sku_catalog", [{**row, "category": "snacks", "event_time": T0}])


def test_bad_and_late_records_go_to_the_dead_letter_topic_and_windows_count_exactly(job_settings: Settings) -> None:
    kinds = ["view", "view", "click", "add_to_cart", "view", "purchase"]
    clicks = [click(n, f"sku-{n % 3}", kinds[n % len(kinds)], minute=n * 0.25, user=f"u{n % 5}") for n in range(80)]
    duplicate = dict(clicks[10])
    late = click(999, "sku-0", "view", minute=1.0)  # 19 minutes behind the stream when it arrives
    # Exactly the out-of-orderness (5 s) behind the newest click: at the watermark, so a window ending
    # at its time has fired. Late, dead-lettered; passed on, the 1 ms dedup window dropped it silently.
    at_watermark = {**click(998, "sku-1", "view", minute=1.0), "event_time": clicks[-1]["event_time"] - 5_000}
    malformed = [b'{"truncated": ', b"\xff\xfe not utf-8", encode_json({**clicks[0], "price_seen": -5.0})]
    producer = make_producer(job_settings)
    topic = job_settings.topics.clicks
    for record in clicks[:11]:
        producer.send(topic, encode_json(record))
    # A heartbeat at the newest click's time: neither a dead letter nor a click in any window.
    send_heartbeats(producer, topic, int(clicks[10]["event_time"]), "test")
    producer.send(topic, encode_json(duplicate))  # a replayed event, on time: counted once
    for raw in malformed:
        producer.send(topic, raw)
    for record in clicks[11:]:
        producer.send(topic, encode_json(record))
    producer.send(topic, encode_json(late))
    producer.send(topic, encode_json(at_watermark))
    producer.flush()

    options = bounded_options()
    t_env = create_table_environment(job_settings, options)
    build_pipeline(t_env, job_settings, options).execute().wait()

    dead = [json.loads(r.value) for r in consume_all(job_settings, job_settings.topics.dlq, expected=5)]
    reasons = sorted(d["reason"].split(":")[0] for d in dead)
    assert reasons == ["bad_encoding", "bad_json", "late", "late", "out_of_range"]
    for letter in dead:
        assert letter["source_topic"] == topic and letter["partition"] == 0 and letter["offset"] >= 0
        raw = base64.b64decode(letter["raw_b64"])
        assert len(raw) == letter["raw_size"]
        assert raw in malformed or json.loads(raw)["event_id"] in ("e999", "e998")

    # Window aggregates equal an independent pandas computation over the same (deduplicated) events.
    t_env = create_table_environment(job_settings, options)
    build_pipeline(t_env, job_settings, options)
    with t_env.execute_sql(
        "SELECT sku, CAST(window_end AS STRING), views_5m, carts_5m, purchases_5m, views_1h, purchases_1h, "
        "unique_users_1h FROM sku_demand"
    ).collect() as rows:
        flink = sorted(tuple(row) for row in rows)

    frame = pd.DataFrame(clicks)
    expected = []
    for end in range(T0 + MINUTE, T0 + 40 * MINUTE, MINUTE):
        long_rows = frame[(frame.event_time >= end - 10 * MINUTE) & (frame.event_time < end)]
        short_rows = long_rows[long_rows.event_time >= end - 2 * MINUTE]
        for sku, group in long_rows.groupby("sku"):
            short_group = short_rows[short_rows.sku == sku]
            end_text = pd.Timestamp(end, unit="ms").strftime("%Y-%m-%d %H:%M:%S")
            expected.append(
                (
                    sku,
                    end_text,
                    int((short_group.event_type == "view").sum()),
                    int((short_group.event_type == "add_to_cart").sum()),
                    int((short_group.event_type == "purchase").sum()),
                    int((group.event_type == "view").sum()),
                    int((group.event_type == "purchase").sum()),
                    int(group[group.event_type == "view"].user_key.nunique()),  # the users who viewed it
                )
            )
    flink_trimmed = [(r[0], r[1][:19], *r[2:]) for r in flink]
    assert flink_trimmed == sorted(expected)


def test_simulated_market_is_priced_end_to_end(job_settings: Settings, trained_model_dir: Path, tmp_path: Path) -> None:
    """Simulator → Kafka → Flink → prices topic (read_committed) and the Feast online store.

    Both decisions: a dynamic price per sku and window, and a personalized offer per view or
    add-to-cart, disclosed, never above the price for everyone.
    """
    from pricewave.feature_store import FeatureWriter, get_price, open_store
    from pricewave.pricing.guardrails import GuardrailPolicy
    from pricewave.schemas import check_event
    from pricewave.simulator.runner import Simulator
    from pricewave.simulator.scenario import load_scenario

    settings = job_settings.model_copy(
        update={"models": job_settings.models.model_copy(update={"model_dir": str(trained_model_dir)})}
    )
    simulator = Simulator(load_scenario("small"), settings, seed=11)
    store = open_store(settings)
    FeatureWriter(store).write("sku_catalog", simulator.catalog_records())
    summary = simulator.run_to_kafka(rate=None, max_events=4000, closed_loop=False, progress=False)
    assert summary.to_dict()

    options = bounded_options()
    options = JobOptions(**{**options.__dict__, "decision_log_dir": str(tmp_path / "decisions")})
    t_env = create_table_environment(settings, options)
    build_pipeline(t_env, settings, options).execute().wait()

    records = [r.value for r in consume_all(settings, settings.topics.prices, timeout_s=20)]
    assert records, "no price decision reached the prices topic"
    catalog = {row["sku"]: row for row in simulator.catalog_records()}
    policy = GuardrailPolicy()
    latest: dict[str, dict[str, object]] = {}
    offers: list[dict[str, object]] = []
    for raw in records:
        decision, reason = check_event("price_decision", raw)
        assert reason is None, reason
        assert decision is not None
        facts = catalog[decision["sku"]]
        floor = max(facts["cost"] * (1 + policy.min_margin), facts["map_price"] or 0.0)
        assert floor - 1e-9 <= decision["price"] <= facts["ceiling_price"] + 1e-9  # guardrails hold
        if decision["kind"] == "offer":
            assert decision["user_key"] is not None and len(decision["user_key"]) == 32
            assert decision["price"] <= facts["base_price"] + 1e-9 or decision["guardrail"] != "kill_switch"
            offers.append(decision)
            continue
        assert decision["user_key"] is None and decision["personalized"] is False
        previous = latest.get(decision["sku"])
        if previous is None or decision["event_time"] >= previous["event_time"]:
            latest[decision["sku"]] = decision
    assert latest, "no per-sku price was published"
    assert offers, "no personalized offer was published"
    model_priced = [o for o in offers if o["model_version"] != "none"]
    assert model_priced, "the trained model priced no offer"
    assert all(o["personalized"] for o in model_priced)  # disclosure flag on every personalized price
    # Each sku's newest decision is what a channel reads from the online store (judged fresh at
    # the simulated time of that decision).
    for sku, decision in latest.items():
        now = datetime.fromtimestamp(int(decision["event_time"]) / 1000 + 60, UTC)
        quote = get_price(store, sku, now=now)
        assert quote.source == "sku"
        assert quote.price == pytest.approx(decision["price"])
    newest_offer = max(offers, key=lambda o: o["event_time"])
    now = datetime.fromtimestamp(int(newest_offer["event_time"]) / 1000 + 1, UTC)
    quote = get_price(store, newest_offer["sku"], user_key=str(newest_offer["user_key"]), now=now)
    assert quote.source == "offer" and quote.personalized == newest_offer["personalized"]
    log_files = list((tmp_path / "decisions").rglob("*"))
    assert any(path.is_file() for path in log_files), "the decision log is empty"
    # Each purchase pushed its shopper's profile (views, carts, purchases over the profile horizon).
    clicks = [check_event("click_event", r.value)[0] for r in consume_all(settings, settings.topics.clicks)]
    buyers = sorted({c["user_key"] for c in clicks if c is not None and c["event_type"] == "purchase"})
    assert buyers, "nobody bought anything"
    profiles = store.get_online_features(
        features=["shopper_profile:shopper_purchases", "shopper_profile:shopper_views"],
        entity_rows=[{"user_key": key} for key in buyers],
    ).to_dict()
    stored = [n for n in profiles["shopper_purchases"] if n is not None]
    # Some purchases are late or malformed on purpose (the scenario's faults): most buyers, not all.
    assert len(stored) >= 0.9 * len(buyers), f"{len(stored)} profiles for {len(buyers)} buyers"
    assert all(n >= 1 for n in stored), "a profile was pushed without a purchase"


def test_heartbeats_on_quiet_topics_close_windows_without_an_idle_timeout(job_settings: Settings) -> None:
    """A live run whose competitor and review topics carry one record each, then only heartbeats.

    The sku windows wait for those topics' watermarks (the competition join, the review summary as
    of the window). With the idle timeout at an hour, only the heartbeats can move them: a sku price
    for a window minutes after the last quote arrives within seconds, and no heartbeat is a dead letter.
    """
    write_catalog_row(job_settings, "hb-1")
    producer = make_producer(job_settings)
    topics = job_settings.topics
    quote = {"event_id": "q1", "sku": "hb-1", "competitor": "acme", "price": 9.5, "in_stock": True, "event_time": T0}
    review = {"review_id": "r1", "sku": "hb-1", "rating": 4, "text": "fine snack", "event_time": T0}
    producer.send(topics.competitor_prices, encode_json(quote))
    producer.send(topics.reviews, encode_json(review))
    for n in range(25):  # a view every 10 s for 4 minutes, a heartbeat on each quiet topic with it
        view = click(n, "hb-1", "view", minute=n / 6)
        producer.send(topics.clicks, encode_json(view))
        for topic in (topics.competitor_prices, topics.reviews):
            send_heartbeats(producer, topic, int(view["event_time"]), "test")
    producer.flush()

    options = bounded_options(bounded=False, idle_timeout_s=3600, checkpoint_interval_s=1)
    t_env = create_table_environment(job_settings, options)
    result = build_pipeline(t_env, job_settings, options).execute()
    client = result.get_job_client()
    try:
        # The window ending at T0 + 3:00 (its time 1 ms before) closes once every watermark passes it:
        # the last heartbeats (T0 + 4:00) take each quiet topic's there; the quote alone stays at T0.
        wanted = T0 + 150_000

        def priced(records: list[object]) -> bool:
            return any(d["kind"] == "sku" and d["event_time"] >= wanted for d in map(_decision, records))

        records = consume_all(job_settings, topics.prices, until=priced, timeout_s=120)
        assert priced(records), sorted({(d["kind"], d["event_time"]) for d in map(_decision, records)})
        dead = consume_all(job_settings, topics.dlq, timeout_s=5)
        assert dead == [], [json.loads(r.value)["reason"] for r in dead]
    finally:
        client.cancel().result()


def _decision(record: object) -> dict[str, object]:
    return json.loads(record.value)  # type: ignore[attr-defined]


def _collect_demand(settings: Settings, options: JobOptions) -> list[tuple[object, ...]]:
    t_env = create_table_environment(settings, options)
    build_pipeline(t_env, settings, options)
    query = (
        "SELECT sku, CAST(window_end AS STRING), views_5m, clicks_5m, carts_5m, purchases_5m, views_1h, "
        "purchases_1h, unique_users_1h FROM sku_demand"
    )
    with t_env.execute_sql(query).collect() as rows:
        return sorted(tuple(row) for row in rows)


def test_out_of_order_input_gives_the_same_windows_as_ordered_input(
    kafka_stack: Settings, feature_repo_copy: object
) -> None:
    """Shuffling events within the out-of-orderness bound changes nothing downstream."""
    import random

    kinds = ["view", "click", "add_to_cart", "purchase", "view"]
    clicks = [click(n, f"sku-{n % 4}", kinds[n % 5], minute=n * 0.05, user=f"u{n % 7}") for n in range(300)]
    shuffled = list(clicks)
    rng = random.Random(3)
    for start in range(0, len(shuffled), 20):  # 20 events span 1 minute of event time...
        block = shuffled[start : start + 20]
        rng.shuffle(block)
        shuffled[start : start + 20] = block
    results = []
    for stream in (clicks, shuffled):
        suffix = uuid.uuid4().hex[:8]
        names = {r: f"test-ooo-{r}-{suffix}" for r in ("clicks", "competitor_prices", "reviews", "prices", "dlq")}
        ensure_topics(kafka_stack, names.values(), partitions=1)
        settings = kafka_stack.model_copy(
            update={"topics": kafka_stack.topics.model_copy(update=names), "feature_repo": str(feature_repo_copy)}
        )
        producer = make_producer(settings)
        for record in stream:
            producer.send(settings.topics.clicks, encode_json(record))
        producer.flush()
        # ...and the bound is 90 s, so no shuffled event is late.
        options = bounded_options(out_of_orderness_s=90)
        results.append(_collect_demand(settings, options))
    assert results[0], "no window fired"
    assert results[0] == results[1]


def test_compiled_plan_is_written_once_then_executed_from_file(job_settings: Settings, tmp_path: Path) -> None:
    """A compiled plan pins operator identities across upgrades; the second run executes the file."""
    from pricewave.job import run_statements

    plan = tmp_path / "plan.json"
    producer = make_producer(job_settings)
    producer.send(job_settings.topics.clicks, b'{"not": "a click"}')
    producer.flush()
    options = bounded_options()
    t_env = create_table_environment(job_settings, options)
    run_statements(t_env, build_pipeline(t_env, job_settings, options), str(plan)).wait()
    written = plan.read_text()
    assert '"nodes"' in written
    producer.send(job_settings.topics.clicks, b"\xff broken")
    producer.flush()
    options = JobOptions(**{**options.__dict__, "group_id": options.group_id + "-2"})
    t_env = create_table_environment(job_settings, options)
    run_statements(t_env, build_pipeline(t_env, job_settings, options), str(plan)).wait()
    assert plan.read_text() == written  # executed from the file, not recompiled
    reasons = [json.loads(r.value)["reason"] for r in consume_all(job_settings, job_settings.topics.dlq, expected=3)]
    # The plan's source kept its own group id and start: it re-reads the topic from the beginning.
    assert sorted(reason.split(":")[0] for reason in reasons) == ["bad_encoding", "missing_field", "missing_field"]


def test_a_record_from_a_clock_running_ahead_is_dead_lettered_without_moving_the_watermark(
    job_settings: Settings,
) -> None:
    """Also runs the job with Python worker processes (``--python-workers process``)."""
    clicks = [click(n, f"sku-{n % 3}", "view", minute=n * 0.25, user=f"u{n % 5}") for n in range(40)]
    ahead = {**click(500, "sku-0", "view", minute=0), "event_time": int(time.time() * 1000) + 10 * MINUTE}
    producer = make_producer(job_settings)
    for record in [*clicks[:20], ahead, *clicks[20:]]:
        producer.send(job_settings.topics.clicks, encode_json(record))
    producer.flush()

    options = bounded_options(python_workers="process")
    t_env = create_table_environment(job_settings, options)
    build_pipeline(t_env, job_settings, options).execute().wait()

    dead = [json.loads(r.value) for r in consume_all(job_settings, job_settings.topics.dlq)]
    # Accepted, it would have moved the watermark 10 minutes past the stream: the 20 clicks after it late.
    assert [d["reason"] for d in dead] == ["bad_timestamp: event_time more than 300 s ahead of the job's clock"]
    assert json.loads(base64.b64decode(dead[0]["raw_b64"]))["event_id"] == "e500"
    assert PYTHON_WORKER_MODE_VARIABLE not in os.environ  # set only while the environment is created


def test_python_worker_mode_and_clock_skew_are_validated() -> None:
    with pytest.raises(ConfigError, match="--python-workers must be loopback or process"):
        JobOptions(python_workers="threads").validate()
    for skew in (0, -1, 86_401):
        with pytest.raises(ConfigError, match="--max-clock-skew must be in"):
            JobOptions(max_clock_skew_s=skew).validate()


def test_only_live_runs_let_a_source_go_idle(settings: Settings) -> None:
    # A bounded source ends at its stopping offsets, so idleness could only make it depend on timing
    # (tests/reliability/test_crash_recovery.py::test_broker_down_longer_than_the_idle_timeout…).
    live, bounded = JobOptions(idle_timeout_s=7), JobOptions(idle_timeout_s=7, bounded=True)
    assert "'scan.watermark.idle-timeout' = '7000 ms'" in source_ddl(settings, "clicks", options=live)
    assert live.source_idle_timeout_s == 7
    assert "idle-timeout" not in source_ddl(settings, "clicks", options=bounded)
    assert bounded.source_idle_timeout_s is None


def test_each_offer_meets_the_sku_price_of_its_minute_when_windows_fire_together(job_settings: Settings) -> None:
    """Two windows of one sku fire on one watermark; only the later one has a competitor price.

    The later window leaves the competition join at once, the earlier waits for the watermark,
    so they reach the versioned view the wrong way round. A click between the two must still meet
    the earlier window's price and features, not none (measured before the per-sku ordering:
    none, so the kill switch priced it).
    """
    write_catalog_row(job_settings, "sku-a")
    producer = make_producer(job_settings)
    for n, minute in enumerate((0.5, 1.5)):  # views of sku-a at 30 s and 90 s
        producer.send(job_settings.topics.clicks, encode_json(click(n, "sku-a", "view", minute=minute)))
    competitor_price = {"event_id": "c1", "sku": "sku-a", "competitor": "shop-b", "price": 9.5, "in_stock": True}
    producer.send(job_settings.topics.competitor_prices, encode_json({**competitor_price, "event_time": T0 + 72_000}))
    producer.flush()
    # A minute of out-of-orderness keeps the watermark before the first window's end until the input
    # ends: then both windows (ending at 60 s and 120 s) fire on the same, final watermark.
    options = bounded_options(out_of_orderness_s=60)
    t_env = create_table_environment(job_settings, options)
    build_pipeline(t_env, job_settings, options)
    with t_env.execute_sql("SELECT sku, event_time, features_json FROM offer_decisions").collect() as rows:
        offers = {int(row[1]): json.loads(row[2]) for row in rows}
    with t_env.execute_sql("SELECT sku, event_time, features_json FROM sku_decisions").collect() as rows:
        windows = {int(row[1]): json.loads(row[2]) for row in rows}
    first, second = T0 + MINUTE - 1, T0 + 2 * MINUTE - 1
    assert windows[first]["competitor_min_price"] is None and windows[second]["competitor_min_price"] == 9.5
    assert offers[T0 + 30_000] == {name: None for name in windows[first]}  # before any window closed
    assert offers[T0 + 90_000] == windows[first]  # the window that closed at 60 s, not none


def test_sku_windows_and_offers_meet_the_review_summary_as_of_their_event_time(job_settings: Settings) -> None:
    """The running review summary reaches the pricers through event-time joins, not the store.

    A review at minute 2 and two at minutes 12 and 12.5. A sku window sees the summary of the reviews
    before its end (one review until the window ending at minute 12, then all three), and an offer
    sees what its sku's window of that minute saw.
    """
    write_catalog_row(job_settings, "sku-r")
    producer = make_producer(job_settings)
    for n, minute in enumerate((5, 15, 25)):
        producer.send(job_settings.topics.clicks, encode_json(click(n, "sku-r", "view", minute=minute)))
    for n, (minute, rating) in enumerate(((2, 5), (12, 1), (12.5, 3))):
        review = {"review_id": f"r{n}", "sku": "sku-r", "rating": rating, "text": "good coffee"}
        producer.send(job_settings.topics.reviews, encode_json({**review, "event_time": T0 + int(minute * MINUTE)}))
    producer.flush()
    options = bounded_options()
    t_env = create_table_environment(job_settings, options)
    build_pipeline(t_env, job_settings, options)
    with t_env.execute_sql("SELECT event_time, features_json FROM sku_decisions").collect() as rows:
        windows = {(int(row[0]) - T0 + 1) // MINUTE: json.loads(row[1]) for row in rows}
    with t_env.execute_sql("SELECT event_time, features_json FROM offer_decisions").collect() as rows:
        offers = {(int(row[0]) - T0) // MINUTE: json.loads(row[1]) for row in rows}
    assert sorted(windows) == list(range(6, 36))
    seen = {minute: (f["review_count"], f["mean_rating"]) for minute, f in windows.items()}
    assert seen == {m: (1, 5.0) if m <= 12 else (3, 3.0) for m in range(6, 36)}
    assert offers[5]["review_count"] is None  # no window of its sku had closed
    assert offers[15] == windows[15] and offers[25] == windows[25]


def test_sku_windows_reach_the_pricer_in_event_time_order_and_are_priced_once(job_settings: Settings) -> None:
    # The plan keeps the ordering step in front of price_sku though nothing reads its aggregate: if
    # a planner ever pruned it, the test above could pass by luck of timing, this one could not.
    options = bounded_options()
    t_env = create_table_environment(job_settings, options)
    plan = build_pipeline(t_env, job_settings, options).explain()
    execution = plan[plan.index("== Optimized Execution Plan ==") :]
    assert execution.count("price_sku(") == 1, "every sku window would be priced more than once"
    upstream = execution[execution.index("price_sku(") :].split("\n\n", 1)[0]
    ordering = upstream.index("OverAggregate(partitionBy=[sku], orderBy=[window_time ASC]")
    assert ordering > upstream.index("TemporalJoin("), "the review join would emit windows out of order"


def test_planning_works_from_a_gateway_thread_that_never_built_a_query(
    settings: Settings, feature_repo_copy: Path
) -> None:
    """FLINK-23020: the gateway may run ``execute()`` on a Java thread other than the one that built the
    queries (it did in CI, after another Python thread's call); planning must not depend on it."""
    from pyflink.java_gateway import get_gateway

    job_settings = settings.model_copy(update={"feature_repo": str(feature_repo_copy)})
    options = bounded_options()
    t_env = create_table_environment(job_settings, options)
    statements = build_pipeline(t_env, job_settings, options)
    client = get_gateway()._gateway_client
    client.deque.append(client._create_connection())  # the next call runs on a fresh Java thread
    plan = statements.compile_plan()  # NullPointerException: metadataHandlerProvider without the fix
    assert "prices_sink" in plan.as_json_string()


def test_a_planning_retry_plans_every_insert_again(job_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """``execute()`` empties its statement set even when planning fails: the retry must submit the job's
    INSERTs, not an empty set (CI: "No operators defined in streaming topology" after a retry)."""
    from pyflink.java_gateway import get_gateway

    from pricewave.job import environment

    prepared = environment.prepare_planner_thread
    attempts: list[int] = []

    def first_planning_on_a_fresh_java_thread(t_env: object) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            client = get_gateway()._gateway_client
            client.deque.append(client._create_connection())  # the planning call lands there: no provider
        else:
            prepared(t_env)  # type: ignore[arg-type]

    monkeypatch.setattr(environment, "prepare_planner_thread", first_planning_on_a_fresh_java_thread)
    write_catalog_row(job_settings, "sku-p")
    producer = make_producer(job_settings)
    for n in range(3):
        producer.send(job_settings.topics.clicks, encode_json(click(n, "sku-p", "view", minute=n)))
    producer.flush()
    options = bounded_options()
    t_env = create_table_environment(job_settings, options)
    build_pipeline(t_env, job_settings, options).execute().wait()
    assert len(attempts) == 2, "the first planning call should have failed and been retried"
    assert consume_all(job_settings, job_settings.topics.prices, expected=1), "the retried job priced nothing"
