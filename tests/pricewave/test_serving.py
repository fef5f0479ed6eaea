"""The price API (``pricewave serve``) over HTTP, on real Feast stores, served by uvicorn on a free port."""

from __future__ import annotations

import re
import socket
import threading
import time
import typing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pricewave.cli import build_parser
from pricewave.config import Settings, load_settings
from pricewave.feature_store import CHANNELS, FeatureWriter, get_price, open_store
from pricewave.privacy import pseudonymize_user
from pricewave.serving import MAX_BATCH, Channel, create_app
from pricewave.stack.redis import RedisService
from tests.conftest import promlint_problems
from tests.pricewave.feature_store.test_reader import catalog, decision

pytestmark = pytest.mark.integration

SHOPPER = "shopper-7"


class Served:
    """An app served by uvicorn in a thread, on a free localhost port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            time.sleep(0.05)

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(self.url + path, params=params, timeout=10)

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def ms_ago(minutes: float) -> int:
    return int((datetime.now(UTC) - timedelta(minutes=minutes)).timestamp() * 1000)


def seed(store: Any, user_key: str) -> None:
    """FRESH-1: offer, sku price and base price, all fresh; STALE-1: an expired offer; BASE-1: base only."""
    writer = FeatureWriter(store)
    writer.write("sku_catalog", [catalog(sku, ms_ago(60 * 24)) for sku in ("FRESH-1", "STALE-1", "BASE-1")])
    writer.write("sku_price", [decision("FRESH-1", ms_ago(2), 18.0), decision("STALE-1", ms_ago(3), 17.0)])
    offers = [decision("FRESH-1", ms_ago(1), 16.0, user_key), decision("STALE-1", ms_ago(20), 15.0, user_key)]
    writer.write("user_offer", offers)


@pytest.fixture
def served(sqlite_store: Any, settings: Settings) -> Iterator[tuple[Served, Any, str]]:
    user_key = pseudonymize_user(SHOPPER, settings.user_key_secret)
    seed(sqlite_store, user_key)
    api = Served(create_app(sqlite_store, settings))
    try:
        yield api, sqlite_store, user_key
    finally:
        api.stop()


def test_the_channel_type_lists_the_channels() -> None:
    assert typing.get_args(Channel) == CHANNELS


def test_a_raw_shopper_id_is_pseudonymized_and_gets_the_offer_with_disclosure(served: tuple[Served, Any, str]) -> None:
    api, store, user_key = served
    answer = api.get("/price", sku="FRESH-1", user=SHOPPER)
    assert answer.status_code == 200, answer.text
    quote = answer.json()
    assert (quote["price"], quote["source"], quote["personalized"]) == (16.0, "offer", True)
    assert quote["user_key"] == user_key and SHOPPER not in answer.text
    # The same answer as the SDK's channel API, field for field (ages differ by the time between).
    expected = get_price(store, "FRESH-1", user_key=user_key).to_dict()
    assert {k: v for k, v in quote.items() if k != "age_s"} == {k: v for k, v in expected.items() if k != "age_s"}
    assert api.get("/price", sku="FRESH-1", user_key=user_key).json()["source"] == "offer"


def test_fallbacks_and_channels(served: tuple[Served, Any, str]) -> None:
    api, _, _ = served
    sources = {
        (sku, user, channel): api.get("/price", **params).json()["source"]
        for sku, user, channel in [
            ("FRESH-1", None, None),
            ("FRESH-1", SHOPPER, "ads_bidding"),
            ("FRESH-1", SHOPPER, "app_pricing"),
            ("STALE-1", SHOPPER, None),
            ("BASE-1", SHOPPER, None),
            ("NO-SUCH-SKU", SHOPPER, None),
        ]
        for params in [{k: v for k, v in {"sku": sku, "user": user, "channel": channel}.items() if v}]
    }
    assert list(sources.values()) == ["sku", "sku", "offer", "sku", "base", "unavailable"]
    unavailable = api.get("/price", sku="NO-SUCH-SKU").json()
    assert (unavailable["price"], unavailable["age_s"], unavailable["personalized"]) == (None, None, False)


def test_a_batch_answers_like_single_requests(served: tuple[Served, Any, str]) -> None:
    api, _, user_key = served
    items = [
        {"sku": "FRESH-1", "user": SHOPPER},
        {"sku": "FRESH-1"},
        {"sku": "STALE-1", "user_key": user_key},
        {"sku": "BASE-1"},
        {"sku": "NO-SUCH-SKU", "user": SHOPPER},
    ]
    for channel in (None, "ads_bidding"):
        answer = api.post("/prices", {"channel": channel, "items": items})
        assert answer.status_code == 200, answer.text
        batch = [(q["sku"], q["price"], q["source"], q["personalized"]) for q in answer.json()["quotes"]]
        singles = [api.get("/price", **item, **({"channel": channel} if channel else {})).json() for item in items]
        assert batch == [(q["sku"], q["price"], q["source"], q["personalized"]) for q in singles]


def test_bad_input_is_a_400_with_one_readable_line(served: tuple[Served, Any, str]) -> None:
    api, _, user_key = served
    cases = [
        (api.get("/price", sku="FRESH-1", user=SHOPPER, user_key=user_key), "not both"),
        (api.get("/price", sku="FRESH-1", user_key="shopper-7"), "pseudonymous"),
        (api.get("/price", sku="FRESH-1", channel="fax"), "channel"),
        (api.get("/price"), "sku"),
        (api.post("/prices", {"items": [{"sku": "A"}] * (MAX_BATCH + 1)}), "items"),
        (api.post("/prices", {"items": [{"sku": "A", "user_key": "nope"}]}), "pseudonymous"),
    ]
    for answer, says in cases:
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert says in error and "\n" not in error, error


def test_health_metrics_and_openapi(served: tuple[Served, Any, str], prometheus_validator: Path) -> None:
    api, _, _ = served
    assert api.get("/health").json() == {"status": "ok", "online_store": "sqlite"}
    for sku in ("FRESH-1", "BASE-1", "NO-SUCH-SKU"):
        api.get("/price", sku=sku, channel="app_pricing")
    api.get("/price", sku="FRESH-1", user_key="bad")
    exposition = api.get("/metrics").text
    assert promlint_problems(prometheus_validator, exposition) == []
    families = {family.name: family for family in text_string_to_metric_families(exposition)}
    quotes = {
        (s.labels["channel"], s.labels["source"]): s.value
        for s in families["pricewave_price_quotes"].samples
        if s.name == "pricewave_price_quotes_total"
    }
    assert quotes == {("app_pricing", "sku"): 1, ("app_pricing", "base"): 1, ("app_pricing", "unavailable"): 1}
    errors = {
        s.labels["reason"]: s.value
        for s in families["pricewave_price_request_errors"].samples
        if s.name == "pricewave_price_request_errors_total"
    }
    assert errors == {"bad_request": 1}
    counts = {
        s.labels["endpoint"]: s.value
        for s in families["pricewave_price_request_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert counts == {"price": 4, "health": 1}
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/price", "/prices", "/health", "/metrics"} <= set(paths)
    assert api.get("/docs").status_code == 200


def test_an_unreachable_store_is_a_503_and_the_api_recovers(
    tmp_path: Any, feature_repo_copy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.reliability.harness import free_port, wait_ready

    monkeypatch.setenv("PRICEWAVE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PRICEWAVE_REDIS__PORT", str(free_port()))
    settings = load_settings()
    service = RedisService(settings)
    service.install()
    service.start()
    try:
        wait_ready(service)
        store = open_store(settings, repo_path=str(feature_repo_copy), profile="redis")
        seed(store, pseudonymize_user(SHOPPER, settings.user_key_secret))
        api = Served(create_app(store, settings))
        try:
            assert api.get("/price", sku="FRESH-1").json()["source"] == "sku"
            service.stop()
            for answer in (api.get("/health"), api.get("/price", sku="FRESH-1")):
                assert answer.status_code == 503, answer.text
                assert "\n" not in answer.json()["error"]
            # The error names a command that starts Redis, and the CLI takes it as written.
            hint = re.search(r"'(pricewave [^']+)'", answer.json()["error"])
            assert hint, answer.json()["error"]
            build_parser().parse_args(hint.group(1).split()[1:])
            service.start()
            wait_ready(service)
            assert api.get("/health").status_code == 200
            assert api.get("/price", sku="FRESH-1").json()["source"] == "sku"
        finally:
            api.stop()
    finally:
        service.stop()
