"""The channel API on real Feast stores: offer -> sku price -> base price, freshness, feast serve."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from pricewave.errors import ConfigError
from pricewave.feature_store import FeatureWriter, get_price, get_prices
from pricewave.privacy import pseudonymize_user
from pricewave.stack.process import child_environment
from tests.conftest import free_port

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
USER = pseudonymize_user("shopper-42", b"reader-test")


def ms_ago(**delta: float) -> int:
    return NOW_MS - int(timedelta(**delta).total_seconds() * 1000)


def catalog(sku: str, event_time: int, base_price: float = 20.0) -> dict[str, Any]:
    return {
        "sku": sku,
        "base_price": base_price,
        "cost": 8.0,
        "map_price": None,
        "ceiling_price": 40.0,
        "category": "toys",
        "event_time": event_time,
    }


def decision(sku: str, event_time: int, price: float, user_key: str | None = None) -> dict[str, Any]:
    return {
        "decision_id": f"d-{sku}-{event_time}-{user_key}",
        "kind": "offer" if user_key else "sku",
        "sku": sku,
        "user_key": user_key,
        "price": price,
        "base_price": 20.0,
        "guardrail": None,
        "guardrails": [],
        "model_version": "demand-v7",
        "propensity": 1.0,
        "personalized": user_key is not None,
        "decision_time": event_time,
        "event_time": event_time,
    }


def seed(store: Any, sku: str, *, offer: int | None, price: int | None, base: int | None) -> None:
    """Write an offer, a sku price and a catalog row with the given event times (None: none)."""
    writer = FeatureWriter(store)
    if base is not None:
        writer.write("sku_catalog", [catalog(sku, base)])
    if price is not None:
        writer.write("sku_price", [decision(sku, price, 18.0)])
    if offer is not None:
        writer.write("user_offer", [decision(sku, offer, 16.0, USER)])


def test_fresh_offer_wins_with_disclosure(any_store: Any) -> None:
    seed(any_store, "FB-1", offer=ms_ago(minutes=5), price=ms_ago(minutes=1), base=ms_ago(days=1))
    quote = get_price(any_store, "FB-1", user_key=USER, now=NOW)
    assert (quote.price, quote.source, quote.personalized, quote.model_version) == (16.0, "offer", True, "demand-v7")
    assert quote.user_key == USER and quote.age_s is not None and 299 <= quote.age_s <= 301


def test_expired_offer_falls_back_to_sku_price(any_store: Any) -> None:
    # The offer view's ttl is 15 minutes; Feast itself would still return the value.
    seed(any_store, "FB-2", offer=ms_ago(minutes=16), price=ms_ago(minutes=30), base=ms_ago(days=1))
    quote = get_price(any_store, "FB-2", user_key=USER, now=NOW)
    assert (quote.price, quote.source, quote.personalized) == (18.0, "sku", False)


def test_expired_sku_price_falls_back_to_base_price(any_store: Any) -> None:
    seed(any_store, "FB-3", offer=ms_ago(hours=3), price=ms_ago(hours=2), base=ms_ago(days=1))
    quote = get_price(any_store, "FB-3", user_key=USER, now=NOW)
    assert (quote.price, quote.source, quote.personalized, quote.model_version) == (20.0, "base", False, None)


def test_nothing_fresh_is_unavailable_not_an_error(any_store: Any) -> None:
    seed(any_store, "FB-4", offer=None, price=None, base=ms_ago(days=45))  # catalog ttl is 30 days
    assert get_price(any_store, "FB-4", user_key=USER, now=NOW).source == "unavailable"
    quote = get_price(any_store, "NO-SUCH-SKU", user_key=USER, now=NOW)
    assert (quote.price, quote.source, quote.age_s) == (None, "unavailable", None)


def test_anonymous_shopper_and_ads_channel_never_see_an_offer(any_store: Any) -> None:
    seed(any_store, "FB-5", offer=ms_ago(minutes=1), price=ms_ago(minutes=1), base=ms_ago(days=1))
    assert get_price(any_store, "FB-5", now=NOW).source == "sku"
    assert get_price(any_store, "FB-5", user_key=USER, channel="ads_bidding", now=NOW).source == "sku"
    assert get_price(any_store, "FB-5", user_key=USER, channel="checkout_pricing", now=NOW).source == "offer"
    assert get_price(any_store, "FB-5", user_key=USER, channel="app_pricing", now=NOW).source == "offer"
    other_user = pseudonymize_user("someone-else", b"reader-test")
    assert get_price(any_store, "FB-5", user_key=other_user, now=NOW).source == "sku"


def test_a_batch_gives_each_request_the_quote_a_single_read_gives(any_store: Any) -> None:
    seed(any_store, "BT-1", offer=ms_ago(minutes=1), price=ms_ago(minutes=1), base=ms_ago(days=1))
    seed(any_store, "BT-2", offer=ms_ago(minutes=16), price=ms_ago(minutes=2), base=ms_ago(days=1))
    seed(any_store, "BT-3", offer=None, price=None, base=ms_ago(days=1))
    asked = [("BT-1", USER), ("BT-1", None), ("BT-2", USER), ("BT-3", None), ("NO-SUCH-SKU", USER), ("BT-3", USER)]
    for channel in (None, "ads_bidding"):
        batch = get_prices(any_store, asked, channel=channel, now=NOW)
        singles = [get_price(any_store, sku, user_key=key, channel=channel, now=NOW) for sku, key in asked]
        assert batch == singles
    assert [quote.source for quote in get_prices(any_store, asked, now=NOW)] == [
        "offer", "sku", "sku", "base", "unavailable", "base"
    ]  # fmt: skip
    assert get_prices(any_store, [], now=NOW) == []


def test_bad_inputs_are_clear_errors(sqlite_store: Any) -> None:
    with pytest.raises(ConfigError, match="pseudonym"):
        get_price(sqlite_store, "A", user_key="shopper-42")
    with pytest.raises(ConfigError, match="unknown channel"):
        get_price(sqlite_store, "A", channel="fax")
    with pytest.raises(ConfigError, match="pseudonym"):
        get_prices(sqlite_store, [("A", None), ("B", "shopper-42")])


def test_single_entity_read_latency(any_store: Any, record_property: Any) -> None:
    now_ms = int(time.time() * 1000)
    seed(any_store, "LAT-1", offer=now_ms, price=now_ms, base=now_ms)
    refs = ["sku_price:price", "sku_price:model_version"]
    for _ in range(20):
        any_store.get_online_features(features=refs, entity_rows=[{"sku": "LAT-1"}])
    samples: dict[str, list[float]] = {"get_online_features": [], "get_price": []}
    for _ in range(300):
        started = time.perf_counter()
        any_store.get_online_features(features=refs, entity_rows=[{"sku": "LAT-1"}])
        samples["get_online_features"].append(time.perf_counter() - started)
        started = time.perf_counter()
        get_price(any_store, "LAT-1", user_key=USER)
        samples["get_price"].append(time.perf_counter() - started)
    store_type = any_store.config.online_store.type
    for name, values in samples.items():
        values.sort()
        p50, p99 = values[len(values) // 2] * 1000, values[int(len(values) * 0.99)] * 1000
        record_property(f"{store_type}_{name}_p50_ms", round(p50, 2))
        record_property(f"{store_type}_{name}_p99_ms", round(p99, 2))
        print(f"\n{store_type} {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    samples["get_online_features"].sort()
    assert samples["get_online_features"][len(samples["get_online_features"]) // 2] < 0.05


def test_feast_serve_answers_a_feature_service_request_like_the_sdk(sqlite_store: Any) -> None:
    now_ms = int(time.time() * 1000)
    seed(sqlite_store, "SRV-1", offer=now_ms, price=now_ms, base=now_ms)
    port = free_port()
    feast = str(Path(sys.executable).with_name("feast"))
    server = subprocess.Popen(
        [feast, "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"],
        cwd=sqlite_store.repo_path,
        env=child_environment({"FEAST_FS_YAML_FILE_PATH": "feature_store.yaml"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else "feast serve exited"
            assert time.monotonic() < deadline, "feast serve did not start"
            time.sleep(0.5)
        # The same request as the curl example in feature_repo/README.md.
        body = {
            "feature_service": "checkout_pricing",
            "entities": {"sku": ["SRV-1"], "user_key": [USER]},
            "full_feature_names": True,
        }
        answer = requests.post(f"{url}/get-online-features", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        payload = answer.json()
        names = payload["metadata"]["feature_names"]
        over_http = {name: result["values"][0] for name, result in zip(names, payload["results"], strict=True)}
    finally:
        server.terminate()
        server.wait(timeout=30)
    sdk = sqlite_store.get_online_features(
        features=sqlite_store.get_feature_service("checkout_pricing"),
        entity_rows=[{"sku": "SRV-1", "user_key": USER}],
        full_feature_names=True,
    ).to_dict()
    assert over_http["user_offer__price"] == 16.0 and over_http["sku_price__price"] == 18.0
    assert over_http["sku_catalog__base_price"] == 20.0
    for name, values in sdk.items():
        if name in ("sku", "user_key"):
            continue
        expected = values[0]
        if isinstance(expected, datetime):  # JSON carries timestamps as epoch seconds
            expected = int(expected.timestamp())
        assert over_http[name] == expected, name
