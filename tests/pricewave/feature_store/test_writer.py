"""The one online-store writer on real Feast stores (SQLite file, password-protected Redis).

Final state must be the newest row per key by (event time, decision_time, decision_id), whatever
the order, batching or repetition of writes, and identical on SQLite and Redis.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricewave.errors import DataError, StackError
from pricewave.feature_store import FeatureWriter, open_store, split_price_decisions
from pricewave.feature_store.stores.sqlite import database_path
from pricewave.privacy import pseudonymize_user

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000  # a fixed epoch-millis base (2026)


def decision(sku: str, event_time: int, **overrides: Any) -> dict[str, Any]:
    """A valid price_decision row (kind 'sku')."""
    row: dict[str, Any] = {
        "decision_id": f"d-{sku}-{event_time}",
        "kind": "sku",
        "sku": sku,
        "user_key": None,
        "price": 10.0,
        "base_price": 20.0,
        "guardrail": None,
        "guardrails": [],
        "model_version": "m1",
        "propensity": 1.0,
        "personalized": False,
        "expected_conversion": 0.1,
        "explanation": {"why": "test"},
        "decision_time": event_time,
        "event_time": event_time,
    }
    row.update(overrides)
    return row


def state(store: Any, skus: list[str]) -> dict[str, tuple[Any, ...]]:
    """What a channel reads back: (price, decision_id, model_version) per sku, via the Feast SDK."""
    response = store.get_online_features(
        features=["sku_price:price", "sku_price:decision_id", "sku_price:model_version"],
        entity_rows=[{"sku": sku} for sku in skus],
    ).to_dict()
    return {
        sku: (response["price"][i], response["decision_id"][i], response["model_version"][i])
        for i, sku in enumerate(skus)
    }


def newest(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """The oracle: per sku, the row with the largest (event_time, decision_time s, decision_id)."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        rank = (row["event_time"], row["decision_time"] // 1000, row["decision_id"])
        current = best.get(row["sku"])
        if current is None or rank > (current["event_time"], current["decision_time"] // 1000, current["decision_id"]):
            best[row["sku"]] = row
    return {sku: (row["price"], row["decision_id"], row["model_version"]) for sku, row in best.items()}


def test_push_then_read_round_trip_identical_on_sqlite_and_redis(sqlite_store: Any, redis_store: Any) -> None:
    rows = [decision(f"RT-{i}", T0 + i, price=10.0 + i, guardrails=["floor"]) for i in range(50)]
    skus = [row["sku"] for row in rows]
    for store in (sqlite_store, redis_store):
        result = FeatureWriter(store).write("sku_price", pd.DataFrame(rows))
        assert (result.received, result.written, result.stale, result.collapsed) == (50, 50, 0, 0)
    full = ["sku_price:" + f.name for f in sqlite_store.get_feature_view("sku_price").features]
    on_sqlite = sqlite_store.get_online_features(features=full, entity_rows=[{"sku": s} for s in skus]).to_dict()
    on_redis = redis_store.get_online_features(features=full, entity_rows=[{"sku": s} for s in skus]).to_dict()
    assert on_sqlite == on_redis
    assert on_sqlite["price"] == [10.0 + i for i in range(50)]
    assert on_sqlite["guardrails"][0] == ["floor"]


def test_older_event_time_never_overwrites_newer_within_one_second(any_store: Any) -> None:
    # Feast's SQLite store keeps whole seconds: 900 ms and 100 ms of the same second must still order.
    writer = FeatureWriter(any_store)
    writer.write("sku_price", [decision("MS-1", T0 + 900, price=9.0, decision_id="b")])
    result = writer.write("sku_price", [decision("MS-1", T0 + 100, price=1.0, decision_id="z")])
    assert result.stale == 1 and result.written == 0
    assert state(any_store, ["MS-1"])["MS-1"] == (9.0, "b", "m1")
    writer.write("sku_price", [decision("MS-1", T0 + 901, price=7.0, decision_id="a")])
    assert state(any_store, ["MS-1"])["MS-1"] == (7.0, "a", "m1")


def test_equal_event_time_tie_break_is_decision_time_then_id(any_store: Any) -> None:
    writer = FeatureWriter(any_store)
    writer.write("sku_price", [decision("TIE-1", T0, decision_id="b", price=2.0)])
    # Same event time, smaller id: loses. Larger id: wins (Feast's Redis store alone would refuse it).
    assert writer.write("sku_price", [decision("TIE-1", T0, decision_id="a", price=1.0)]).written == 0
    assert writer.write("sku_price", [decision("TIE-1", T0, decision_id="c", price=3.0)]).written == 1
    assert state(any_store, ["TIE-1"])["TIE-1"] == (3.0, "c", "m1")
    # A later decision_time beats a larger id.
    later = decision("TIE-1", T0, decision_id="a", decision_time=T0 + 5000, price=4.0)
    assert writer.write("sku_price", [later]).written == 1
    assert state(any_store, ["TIE-1"])["TIE-1"] == (4.0, "a", "m1")


def test_replayed_batches_change_nothing(any_store: Any) -> None:
    writer = FeatureWriter(any_store)
    rows = [decision(f"RP-{i % 7}", T0 + i * 10, price=float(i)) for i in range(70)]
    first = writer.write("sku_price", rows)
    assert first.written == 7 and first.collapsed == 63
    before = state(any_store, [f"RP-{i}" for i in range(7)])
    for _ in range(2):
        again = writer.write("sku_price", rows)
        assert again.written == 0 and again.stale == 7
    assert state(any_store, [f"RP-{i}" for i in range(7)]) == before == newest(rows)


def test_duplicates_within_a_batch_collapse_to_the_newest(any_store: Any) -> None:
    rows = [
        decision("DUP-1", T0 + 5, price=5.0),
        decision("DUP-1", T0 + 9, price=9.0),
        decision("DUP-1", T0 + 1, price=1.0),
        decision("DUP-1", T0 + 9, price=8.0, decision_id="a"),  # same time, smaller id than "d-DUP-1-..."
    ]
    result = FeatureWriter(any_store).write("sku_price", rows)
    assert (result.written, result.collapsed) == (1, 3)
    assert state(any_store, ["DUP-1"])["DUP-1"] == (9.0, f"d-DUP-1-{T0 + 9}", "m1")


def test_fully_tied_rows_resolve_identically_on_both_stores(sqlite_store: Any, redis_store: Any) -> None:
    # Same key, event time, decision_time and id, different content: the value digest decides.
    a = decision("FT-1", T0, decision_id="same", price=1.0)
    b = decision("FT-1", T0, decision_id="same", price=2.0)
    results = []
    for store, order in ((sqlite_store, [a, b]), (redis_store, [b, a])):
        writer = FeatureWriter(store)
        for row in order:
            writer.write("sku_price", [row])
        results.append(state(store, ["FT-1"]))
    assert results[0] == results[1]


batches_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),  # sku
        st.sampled_from([0, 1, 499, 500, 999, 1000, 1001, 2500]),  # event-time offset, ms (sub-second ties)
        st.integers(0, 2),  # decision_time offset, s
        st.sampled_from(["a", "b", "c"]),  # decision id suffix
        st.integers(1, 999),  # price cents
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=batches_strategy, seed=st.integers(0, 2**16), batch_size=st.integers(1, 15))
def test_any_order_any_batching_reaches_the_newest_state_on_both_stores(
    sqlite_store: Any, redis_store: Any, raw: list[tuple[int, int, int, str, int]], seed: int, batch_size: int
) -> None:
    prefix = uuid.uuid4().hex[:8]
    rows = []
    for sku, event_offset, decision_offset, suffix, cents in raw:
        event_time = T0 + event_offset
        rows.append(
            decision(
                f"H{prefix}-{sku}",
                event_time,
                # The id is unique per (sku, event time, decision time) so the oracle has no full ties.
                decision_id=f"{suffix}-{event_offset}-{decision_offset}",
                decision_time=T0 + decision_offset * 1000,
                price=cents / 100,
            )
        )
    unique = {(r["sku"], r["event_time"], r["decision_time"], r["decision_id"]): r for r in rows}
    rows = list(unique.values())
    expected = newest(rows)
    skus = sorted(expected)
    orders = {"shuffled": random.Random(seed).sample(rows, len(rows)), "reversed": rows[::-1]}
    for name, order in orders.items():
        for store in (sqlite_store, redis_store):
            writer = FeatureWriter(store)
            for start in range(0, len(order), batch_size):
                writer.write("sku_price", order[start : start + batch_size])
            assert state(store, skus) == expected, (name, store.config.online_store.type)
            assert writer.write("sku_price", order).written == 0  # a full replay on top changes nothing
            assert state(store, skus) == expected, (name, "replay", store.config.online_store.type)


def test_split_price_decisions_routes_offers_to_user_offer(any_store: Any) -> None:
    key = pseudonymize_user("shopper-1", b"secret")
    rows = [decision("SP-1", T0), decision("SP-1", T0, kind="offer", user_key=key, personalized=True, price=8.0)]
    parts = split_price_decisions(rows)
    writer = FeatureWriter(any_store)
    assert writer.write("sku_price", parts["sku_price"]).written == 1
    assert writer.write("user_offer", parts["user_offer"]).written == 1
    with pytest.raises(DataError, match="another kind"):
        writer.write("sku_price", rows)
    offer = any_store.get_online_features(
        features=["user_offer:price", "user_offer:personalized"], entity_rows=[{"sku": "SP-1", "user_key": key}]
    ).to_dict()
    assert offer["price"] == [8.0] and offer["personalized"] == [True]


def test_raw_user_ids_are_refused(any_store: Any) -> None:
    rows = [decision("RAW-1", T0, kind="offer", user_key="alice@example.com", personalized=True)]
    with pytest.raises(DataError, match="pseudonym"):
        FeatureWriter(any_store).write("user_offer", rows)


def test_no_raw_user_id_reaches_sqlite_or_redis(sqlite_store: Any, redis_store: Any, redis_server: Any) -> None:
    secret = b"privacy-test-secret"
    raw_ids = [f"customer-{i}@example.com" for i in range(20)]
    sessions = [
        {
            "user_key": pseudonymize_user(raw, secret),
            "recent_views": i,
            "recent_carts": 1,
            "mean_price_seen": 12.5,
            "dwell_s": 30.0,
            "recency_s": 2.0,
            "event_time": T0 + i,
        }
        for i, raw in enumerate(raw_ids)
    ]
    offers = [
        decision(f"PV-{i}", T0 + i, kind="offer", user_key=s["user_key"], personalized=True)
        for i, s in enumerate(sessions)
    ]
    for store in (sqlite_store, redis_store):
        writer = FeatureWriter(store)
        assert writer.write("user_session", sessions).written == 20
        assert writer.write("user_offer", offers).written == 20
    database = database_path(sqlite_store)
    # The file and its write-ahead log (recent writes live there until a checkpoint).
    blob = b"".join(path.read_bytes() for path in database.parent.glob(f"{database.name}*"))
    client = redis_server.client()
    redis_bytes = b"".join(
        key + b"".join(k + v for k, v in client.hgetall(key).items()) for key in client.scan_iter(count=1000)
    )
    assert len(redis_bytes) > 1000 and len(blob) > 1000
    for raw in raw_ids:
        assert raw.encode() not in blob and raw.encode() not in redis_bytes
    # The pseudonymous keys are there (the scan looked at the right bytes).
    first_key = str(sessions[0]["user_key"]).encode()
    assert first_key in blob and first_key in redis_bytes


def test_redis_without_password_fails_clearly(feature_repo_copy: Any, redis_env: Any, monkeypatch: Any) -> None:
    # Opening the store pings Redis: the missing or wrong password is reported before any write.
    monkeypatch.setenv("PRICEWAVE_REDIS_PASSWORD", "")
    with pytest.raises(StackError, match=r"requires a password.*PRICEWAVE_REDIS_PASSWORD"):
        open_store(redis_env, repo_path=str(feature_repo_copy), profile="redis")
    monkeypatch.setenv("PRICEWAVE_REDIS_PASSWORD", "wrong")
    with pytest.raises(StackError, match="rejected the password"):
        open_store(redis_env, repo_path=str(feature_repo_copy), profile="redis")


def test_a_batch_is_one_guarded_upsert_round_trip(any_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batching is structural: 2,000 rows in two batches are two store round trips, not 2,000, and
    the lean path never goes through Feast's ``write_to_online_store``.

    (The speed that buys is measured in bench/online_store.py, not asserted here.)
    """
    writer = FeatureWriter(any_store)
    assert writer.direct
    writer.write("sku_price", [decision("WARM-0", T0)])
    assert writer._direct is not None
    calls: list[int] = []
    original = writer._direct.upsert_if_newer

    def counting(view: Any, rows: Any) -> Any:
        calls.append(len(rows))
        return original(view, rows)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the lean path must not call Feast's writer")

    monkeypatch.setattr(writer._direct, "upsert_if_newer", counting)
    monkeypatch.setattr(any_store, "write_to_online_store", refuse)
    batch = [decision(f"BT-{i}", T0 + i) for i in range(2000)]
    for start in range(0, len(batch), 1000):
        assert writer.write("sku_price", batch[start : start + 1000]).written == 1000
    assert calls == [1000, 1000]


def stored_rows(store: Any, view: str, keys: list[dict[str, Any]]) -> list[tuple[Any, dict[str, bytes]]]:
    """Feast's own online read of some entities: (event time, each feature's stored bytes)."""
    from pricewave.feature_store.stores import online_read

    writer = FeatureWriter(store)
    feature_view = store.get_feature_view(view)
    features = [f.name for f in feature_view.features]
    entity_keys = [writer.entity_key(view, [key[name] for name in writer.join_keys(view)]) for key in keys]
    return [
        (when, {name: proto.SerializeToString() for name, proto in (values or {}).items()})
        for when, values in online_read(store, feature_view, entity_keys, features)
    ]


def test_the_lean_path_stores_exactly_what_feasts_writer_stores(any_store: Any) -> None:
    """Feast's reads stay valid: per view, the same rows written through Feast's own
    ``write_to_online_store`` (the Feast path) and through the lean path read back byte for byte
    the same, event times included, with the SDK and with Feast's raw online read."""
    key = pseudonymize_user("shopper-lean", b"secret")
    offer = {"kind": "offer", "user_key": key, "personalized": True, "explanation": None, "guardrail": "floor"}
    catalog = {"base_price": 20.0, "cost": 10.0, "map_price": None, "ceiling_price": 40.0, "category": "snacks"}
    cases = {
        "sku_price": lambda sku: decision(
            sku, T0 + 123, decision_id="d-1", guardrails=["floor", "max_change"], expected_conversion=None
        ),
        "user_offer": lambda sku: decision(sku, T0 + 456, **offer, decision_id="d-2", price=8.5),
        "sku_catalog": lambda sku: {"sku": sku, **catalog, "event_time": T0 + 789},
    }
    for view, row in cases.items():
        feast_rows = [row(f"FP-{view}-{i}") for i in range(3)]
        lean_rows = [row(f"LP-{view}-{i}") for i in range(3)]
        via_feast = FeatureWriter(any_store, direct=False)
        assert not via_feast.direct
        assert via_feast.write(view, feast_rows).written == 3
        assert FeatureWriter(any_store).write(view, lean_rows).written == 3
        join_keys = FeatureWriter(any_store).join_keys(view)
        keys = [[{name: r[name] for name in join_keys} for r in rows] for rows in (feast_rows, lean_rows)]
        assert stored_rows(any_store, view, keys[0]) == stored_rows(any_store, view, keys[1]), view
        features = [f"{view}:{f.name}" for f in any_store.get_feature_view(view).features]
        read = [any_store.get_online_features(features=features, entity_rows=k).to_dict() for k in keys]
        for name in read[0]:
            if name not in join_keys:
                assert read[0][name] == read[1][name], (view, name)


def test_rows_that_feast_wrote_itself_are_ranked_from_what_is_stored(any_store: Any) -> None:
    """A row stored without the lean path (Feast's own writer, as ``feast materialize`` writes) is
    ranked from its stored values: an older row does not replace it, a later one does."""
    from pricewave.feature_store.writer import to_utc

    frame = pd.DataFrame([decision("FW-1", T0 + 5_000, price=5.0, decision_id="m")])
    frame["event_time"] = to_utc(frame["event_time"], "event_time", "sku_price")
    frame["decision_time"] = to_utc(frame["decision_time"], "decision_time", "sku_price")
    any_store.write_to_online_store("sku_price", frame.drop(columns=["kind", "explanation"]))
    writer = FeatureWriter(any_store)
    assert writer.write("sku_price", [decision("FW-1", T0 + 4_999, price=1.0)]).stale == 1
    assert writer.write("sku_price", [decision("FW-1", T0 + 5_000, price=2.0, decision_id="a")]).stale == 1
    assert state(any_store, ["FW-1"])["FW-1"] == (5.0, "m", "m1")
    assert writer.write("sku_price", [decision("FW-1", T0 + 5_000, price=3.0, decision_id="z")]).written == 1
    assert state(any_store, ["FW-1"])["FW-1"] == (3.0, "z", "m1")
    # Feast writes over a ranked row: its new value is ranked again, not compared with the old rank.
    frame["price"], frame["decision_id"] = 6.0, "zz"
    frame["event_time"] = to_utc(pd.Series([T0 + 9_000]), "event_time", "sku_price")
    any_store.write_to_online_store("sku_price", frame.drop(columns=["kind", "explanation"]))
    assert writer.write("sku_price", [decision("FW-1", T0 + 8_000, price=7.0)]).stale == 1
    assert state(any_store, ["FW-1"])["FW-1"] == (6.0, "zz", "m1")


def test_two_writers_at_once_on_the_same_keys_reach_the_newest_state(any_store: Any) -> None:
    """Two writers (two job workers, each with its own connection) writing the same keys in different
    orders at the same time: no lock error, nothing lost, the newest row of every key. (Whether
    their steps interleave is up to the scheduler; the atomicity itself is the store's: a Lua script,
    a ``BEGIN IMMEDIATE`` transaction.)"""
    import threading

    rows = [
        decision(f"RACE-{i % 40}", T0 + (i * 7919) % 5_000, decision_id=f"id-{i}", price=float(i)) for i in range(800)
    ]
    expected = newest(rows)
    orders = [random.Random(1).sample(rows, len(rows)), random.Random(2).sample(rows, len(rows))]
    errors: list[BaseException] = []

    def run(order: list[dict[str, Any]]) -> None:
        writer = FeatureWriter(any_store)
        try:
            for start in range(0, len(order), 10):
                writer.write("sku_price", order[start : start + 10])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            writer.close()

    threads = [threading.Thread(target=run, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert state(any_store, sorted(expected)) == expected


def test_a_deleted_sqlite_file_gets_its_tables_back_on_open(sqlite_store: Any) -> None:
    """Deleting the file (to start over) leaves the registry as it was: ``feast apply`` sees no
    change and creates nothing, so ``open_store`` recreates the tables the registry lists."""
    writer = FeatureWriter(sqlite_store)
    writer.write("sku_price", [decision("A", T0)])
    path = database_path(sqlite_store)
    for file in path.parent.glob(path.name + "*"):  # the file and its -wal / -shm
        file.unlink()
    reopened = open_store(repo_path=sqlite_store.repo_path, profile="sqlite")
    assert state(reopened, ["A"]) == {"A": (None, None, None)}
    FeatureWriter(reopened).write("sku_price", [decision("A", T0 + 1, price=12.5)])
    assert state(reopened, ["A"]) == {"A": (12.5, f"d-A-{T0 + 1}", "m1")}
    # A writer opened before keeps no connection to the deleted file: it writes the new one.
    assert writer.write("sku_price", [decision("A", T0 + 2, price=13.5)]).written == 1
    assert state(reopened, ["A"]) == {"A": (13.5, f"d-A-{T0 + 2}", "m1")}


def test_a_write_waits_out_another_writers_lock_instead_of_failing(sqlite_store: Any) -> None:
    """SQLite lets one writer at a time; a second worker of the job that waits past the 5 s busy
    timeout retries instead of failing the job ("database is locked" killed runs on a loaded machine)."""
    import sqlite3
    import threading
    import time

    writer = FeatureWriter(sqlite_store)
    writer.write("sku_price", [decision("LOCK-1", T0)])
    holder = sqlite3.connect(database_path(sqlite_store), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # the other writer, holding the lock for 7 s
    releaser = threading.Timer(7.0, lambda: holder.execute("COMMIT"))
    releaser.start()
    started = time.monotonic()
    try:
        result = writer.write("sku_price", [decision("LOCK-1", T0 + 60_000, price=11.0)])
    finally:
        releaser.join()
        holder.close()
    assert time.monotonic() - started >= 6.5  # it did wait for the lock
    assert result.written == 1
    assert state(sqlite_store, ["LOCK-1"])["LOCK-1"][0] == 11.0


def test_a_redis_that_lost_its_scripts_still_takes_writes(redis_store: Any, redis_server: Any) -> None:
    """A restarted Redis has no scripts cached: the writer loads its compare-and-set script again."""
    writer = FeatureWriter(redis_store)
    assert writer.write("sku_price", [decision("NS-1", T0, price=1.0)]).written == 1
    redis_server.client().script_flush()
    assert writer.write("sku_price", [decision("NS-1", T0 + 1, price=2.0)]).written == 1
    assert writer.write("sku_price", [decision("NS-1", T0, price=3.0)]).stale == 1
    assert state(redis_store, ["NS-1"])["NS-1"] == (2.0, f"d-NS-1-{T0 + 1}", "m1")


def shopper_profile(user_key: str, event_time: int, views: int) -> dict[str, Any]:
    return {
        "user_key": user_key,
        "shopper_views": views,
        "shopper_clicks": 3,
        "shopper_carts": 1,
        "shopper_purchases": 2,
        "shopper_paid_ratio": 0.9,
        "event_time": event_time,
    }


def stored_views(store: Any, user_keys: list[str]) -> list[Any]:
    rows = [{"user_key": key} for key in user_keys]
    return store.get_online_features(features=["shopper_profile:shopper_views"], entity_rows=rows).to_dict()[
        "shopper_views"
    ]


def test_delete_removes_one_users_rows_and_nothing_else(any_store: Any) -> None:
    alice, bob = (pseudonymize_user(name, b"delete-test") for name in ("alice", "bob"))
    writer = FeatureWriter(any_store)
    writer.write("shopper_profile", [shopper_profile(alice, T0, 40), shopper_profile(bob, T0, 7)])
    assert stored_views(any_store, [alice, bob]) == [40, 7]

    assert writer.delete("shopper_profile", [[alice]]) == 1
    assert stored_views(any_store, [alice, bob]) == [None, 7]
    assert writer.delete("shopper_profile", [[alice]]) == 0  # nothing left to delete
    # The newest-wins bookkeeping went with the row: an older profile is written again, not refused.
    assert writer.write("shopper_profile", [shopper_profile(alice, T0 - 60_000, 3)]).written == 1
    assert stored_views(any_store, [alice, bob]) == [3, 7]
