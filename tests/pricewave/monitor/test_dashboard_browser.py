"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) while records flow.

The page must go live over server-sent events, draw the uPlot charts, and keep drawing: the price
chart and the timeline gain data points between two reads. A screenshot lands in the test's tmp
dir (and in docs/monitor.png when PRICEWAVE_UPDATE_DOCS_SCREENSHOT=1).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pricewave.config import Settings
from pricewave.kafka_io import encode_json, make_producer
from pricewave.monitor import Monitor, make_server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ROLES = ("clicks", "competitor_prices", "reviews", "prices", "dlq")
DOCS_SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "monitor.png"


@pytest.fixture
def flowing(fresh_topic_settings: Callable[..., Settings]) -> Iterator[Settings]:
    """Fresh topics with price decisions, competitor quotes and dead letters flowing into them."""
    settings = fresh_topic_settings("test-dashboard")
    names = {role: getattr(settings.topics, role) for role in ROLES}
    stop = threading.Event()

    def produce() -> None:
        producer = make_producer(settings)
        n = 0
        while not stop.is_set() and n < 2000:  # bounded: about 3 minutes at most
            now = int(time.time() * 1000)
            sku = ["A1", "B2"][n % 2]
            rules = [[], ["floor"], ["max_change"], ["kill_switch"]][n % 4]
            producer.send(names["prices"], encode_json({
                "decision_id": f"d{n}", "kind": "sku", "sku": sku, "user_key": None,
                "price": round(20 + 3 * ((n // 2) % 7) / 7, 2), "base_price": 20.0,
                "guardrail": rules[-1] if rules else None, "guardrails": rules,
                "model_version": "demand-v3", "propensity": 0.8 if n % 5 == 0 else 1.0,
                "personalized": False, "decision_time": now, "event_time": now - 150 - (n % 9) * 40,
            }))  # fmt: skip
            if n % 3 == 0:
                producer.send(names["competitor_prices"], encode_json({
                    "event_id": f"c{n}", "sku": sku, "competitor": ["shopx", "shopy"][(n // 2) % 2],
                    "price": round(19 + (n % 11) / 5, 2), "in_stock": True, "event_time": now,
                }))  # fmt: skip
            if n % 10 == 0:
                producer.send(names["dlq"], encode_json({
                    "reason": "late" if n % 20 else "missing_field: sku", "source_topic": names["clicks"],
                    "partition": 0, "offset": n, "raw_b64": "e30=", "raw_size": 2, "dead_letter_time": now,
                }))  # fmt: skip
            producer.flush()
            n += 1
            stop.wait(0.1)
        producer.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    yield settings
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def dashboard_url(flowing: Settings) -> Iterator[str]:
    monitor = Monitor(flowing, backfill=None, refresh_s=0.5)
    server = make_server(monitor, port=0)
    monitor.start()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server.url
    monitor.stop()
    server.shutdown()
    server.server_close()


def points(page: Any, chart: str) -> int:
    return int(page.get_attribute(f"#{chart}", "data-points") or 0)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_dashboard_goes_live_and_its_charts_grow(dashboard_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1500},
        )
        try:
            page = context.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(dashboard_url)
            page.wait_for_function("document.getElementById('status').textContent === 'live'", timeout=30_000)
            page.wait_for_function(
                "Number(document.getElementById('price-chart').dataset.points) > 2"
                " && Number(document.getElementById('timeline-chart').dataset.points) > 1",
                timeout=60_000,
            )
            first = {chart: points(page, chart) for chart in ("price-chart", "timeline-chart")}
            assert page.locator("#price-chart canvas").count() == 1
            assert page.locator("#timeline-chart canvas").count() == 1
            page.wait_for_function(
                f"Number(document.getElementById('price-chart').dataset.points) > {first['price-chart']}"
                f" && Number(document.getElementById('timeline-chart').dataset.points) > {first['timeline-chart']}",
                timeout=30_000,
            )
            second = {chart: points(page, chart) for chart in ("price-chart", "timeline-chart")}
            assert second["price-chart"] > first["price-chart"] and second["timeline-chart"] > first["timeline-chart"]
            # the panels show what flows: a model version, guardrail rules, dead letters and the Flink link
            assert page.text_content("#model-version") == "demand-v3"
            assert "kill_switch" in (page.text_content("#guardrails") or "")
            assert int((page.text_content("#dlq-total") or "0").replace(",", "")) > 0
            assert (page.get_attribute("#flink-link", "href") or "").startswith("http://")
            legend = page.text_content("#price-chart") or ""
            assert "our price" in legend and "shopx" in legend
            time.sleep(1)  # let the latest frame paint before the picture
            shot = tmp_path / "monitor.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            context.close()
    assert shot.stat().st_size > 20_000
    if os.environ.get("PRICEWAVE_UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, DOCS_SCREENSHOT)
    assert not errors, errors
