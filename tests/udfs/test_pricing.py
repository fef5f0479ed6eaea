"""The sku pricer's rate limit against the price history, on the real UDF class and a real store.

:class:`udfs.pricing.SkuPricer` is driven as a Python worker drives it (``open`` then ``eval`` on
pandas columns) against an applied feature repo (SQLite and Redis online stores) and a fresh model. The rate
limit compares each window with the sku's previous one, so a price must not depend on how windows
are batched, on their order within a batch, or on what was priced after it (a replay).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pricewave.config import Settings, load_settings
from pricewave.feature_store import PROFILE_ENV, PROFILES, FeatureWriter, open_store
from pricewave.feature_store.price_history import PriceHistory
from tests.reliability.test_kill_switch_and_privacy import CATALOG, T0, publish_model, window_features

pytestmark = pytest.mark.integration

SKU = "KS-0"  # base 20.0, cost 9.0 in the test catalog
MINUTE = 60_000


def windows(minutes: list[int]) -> list[pd.Series]:
    """``price_sku``'s columns for windows of one sku ending at the given minutes after T0."""
    from udfs.pricing import SkuPricer

    n = len(minutes)
    values: dict[str, Any] = {
        "sku": [SKU] * n,
        "window_time": pd.to_datetime([T0 + m * MINUTE - 1 for m in minutes], unit="ms", utc=True),
        **window_features(n),
    }
    return [pd.Series(values[name]) for name in SkuPricer.COLUMNS]


def priced(pricer: Any, minutes: list[int]) -> dict[int, float]:
    out = pricer.eval(*windows(minutes))
    assert out["decision_json"].notna().all()
    return {(int(t) - T0 + 1) // MINUTE: float(p) for t, p in zip(out["event_time"], out["price"], strict=True)}


@pytest.fixture(params=["sqlite", "redis"])
def pricing_settings(
    request: pytest.FixtureRequest, feature_repo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings on a private applied repo with the test catalog, on each online store."""
    monkeypatch.setenv("PRICEWAVE_STATE_DIR", str(tmp_path / "state"))
    if request.param == "redis":
        request.getfixturevalue("redis_env")  # a password-protected server, flushed
        monkeypatch.setenv(PROFILE_ENV, PROFILES["redis"])
    settings = load_settings().model_copy(update={"feature_repo": str(feature_repo_copy)})
    FeatureWriter(open_store(settings)).write("sku_catalog", CATALOG)
    return settings


@pytest.fixture
def pricer(pricing_settings: Settings) -> Any:
    from udfs.pricing import SkuPricer

    publish_model(pricing_settings, age_s=0)
    # The sku sold at 14.00 the window before: the 10 % rate limit holds the next prices well below
    # what the model would pick, so every window's price depends on the one before.
    PriceHistory(open_store(pricing_settings)).record([SKU], [T0 - 1], [14.0])
    udf = SkuPricer(pricing_settings)
    udf.open(None)
    assert open_store(pricing_settings).config.online_store.type == udf.history.ops.NAME
    return udf


def test_windows_of_one_batch_are_priced_in_sequence(pricer: Any, pricing_settings: Settings) -> None:
    together = priced(pricer, [3, 1, 2])  # one batch, out of order within it
    prices = [together[m] for m in (1, 2, 3)]
    assert prices[0] <= 14.0 * 1.1 + 1e-9, "the first window ignored the price before it"
    assert prices == sorted(prices) and len(set(prices)) == 3, f"the rate limit did not bind: {prices}"
    # Each window was priced against the one before it, which the history now holds.
    history = PriceHistory(open_store(pricing_settings))
    assert history.latest_before([SKU] * 3, [T0 + m * MINUTE - 1 for m in (1, 2, 3)]) == [14.0, *prices[:2]]


def test_a_replayed_window_is_priced_as_the_first_time_although_later_ones_were_priced(pricer: Any) -> None:
    first = {**priced(pricer, [1]), **priced(pricer, [2]), **priced(pricer, [3])}  # three batches
    assert priced(pricer, [2]) == {2: first[2]}  # replayed after a restart: not capped by window 3
    assert priced(pricer, [1, 2]) == {1: first[1], 2: first[2]}
    assert priced(pricer, [3, 2, 1]) == first  # one batch, reversed: as in three


def test_the_pricer_writes_what_it_published_into_the_store_itself(pricer: Any, pricing_settings: Settings) -> None:
    """No push UDF behind the pricer: the same call that priced a batch wrote its newest price per
    sku into ``sku_price``, and a replay of an older window does not take it back."""
    import json

    out = pricer.eval(*windows([1, 2]))
    newest = json.loads(out["decision_json"].iloc[-1])
    store = open_store(pricing_settings)
    read = store.get_online_features(
        features=["sku_price:price", "sku_price:decision_id"], entity_rows=[{"sku": SKU}]
    ).to_dict()
    assert (read["price"], read["decision_id"]) == ([newest["price"]], [newest["decision_id"]])
    pricer.eval(*windows([1]))  # replayed after a restart
    again = store.get_online_features(features=["sku_price:decision_id"], entity_rows=[{"sku": SKU}]).to_dict()
    assert again["decision_id"] == [newest["decision_id"]]


def test_a_decisions_typed_columns_are_its_wire_records_fields() -> None:
    """One encoder: the decision log's columns carry what the published JSON says, field for field."""
    import json

    from udfs.pricing import DECISION_FIELDS, DECISION_RECORD_COLUMNS, decisions_frame

    inputs = pd.DataFrame(
        {
            "sku": ["S1", "S2"],
            "user_key": ["a" * 32, "b" * 32],
            "event_time": [1_700_000_000_000, 1_700_000_060_000],
            "views_5m": [3.0, None],
        }
    )
    decided = pd.DataFrame(
        {
            "price": [9.99, float("nan")],
            "base_price": [12.99, 12.99],
            "guardrail": ["price_point", "no_floor"],
            "guardrails": [["floor", "price_point"], ["no_floor"]],
            "model_version": ["v1", "v1"],
            "propensity": [1.0, 1.0],
            "personalized": [True, False],
            "expected_conversion": [0.25, float("nan")],
            "explanation": ["", ""],
        }
    )
    frame = decisions_frame("offer", inputs, decided, now_ms=1_700_000_100_000)

    assert list(frame.columns) == [name for name, _ in DECISION_FIELDS]
    published, withheld = frame.to_dict("records")
    wire = json.loads(published["decision_json"])
    assert {name: published[name] for name in DECISION_RECORD_COLUMNS} == {
        name: wire[name] for name in DECISION_RECORD_COLUMNS
    }
    assert wire["guardrails"] == ["floor", "price_point"]
    assert json.loads(published["features_json"])["views_5m"] == 3.0
    assert withheld["decision_json"] is None and pd.isna(withheld["price"]) and withheld["guardrail"] == "no_floor"


def test_the_model_reads_is_holiday_from_the_calendar_in_the_settings(pricing_settings: Settings) -> None:
    """The calendar travels with the job's settings; a window inside a holiday is priced as one."""
    import json
    from datetime import UTC, datetime, timedelta

    from pricewave.config import HolidayPeriod
    from udfs.pricing import SkuPricer

    publish_model(pricing_settings, age_s=0)
    day = datetime.fromtimestamp(T0 / 1000, tz=UTC)

    def conversion(calendar: list[HolidayPeriod]) -> float:
        pricer = SkuPricer(pricing_settings.model_copy(update={"holidays": calendar}))
        pricer.open(None)
        (decision,) = pricer.eval(*windows([1]))["decision_json"]  # the same window each time: a replay
        return float(json.loads(decision)["expected_conversion"])

    ordinary = conversion([])
    assert conversion([HolidayPeriod(name="later", start=day + timedelta(days=2), end=day + timedelta(days=3))]) == (
        ordinary
    )
    assert conversion([HolidayPeriod(name="sale", start=day, end=day + timedelta(days=1))]) != ordinary


def test_a_pricer_takes_one_torch_thread_only_in_a_worker_process_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types
    from importlib.machinery import ModuleSpec

    import torch

    from udfs.pricing import _one_torch_thread_per_worker_process

    threads = torch.get_num_threads()
    try:
        _one_torch_thread_per_worker_process()  # here: a loopback worker would share this process
        assert torch.get_num_threads() == threads
        worker = types.ModuleType("__main__")
        worker.__spec__ = ModuleSpec("pyflink.fn_execution.beam.beam_boot", None)  # python -m …beam_boot
        monkeypatch.setitem(sys.modules, "__main__", worker)
        _one_torch_thread_per_worker_process()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
