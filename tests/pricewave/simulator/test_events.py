"""Fault injection: every malformed class fails validation, shares and time shifts hold."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pricewave.schemas import check_event
from pricewave.simulator.events import EVENT_NAMES, FaultInjector, malformed_bytes
from pricewave.simulator.scenario import MALFORMED_KINDS, FaultsSpec, MalformedKind

NOW_MS = 1_736_121_600_000
VALID: dict[str, dict[str, Any]] = {
    "click_event": {
        "event_id": "c-1",
        "event_type": "purchase",
        "user_key": "0123456789abcdef0123456789abcdef",
        "session_id": "s-1",
        "sku": "snacks-00001",
        "price_seen": 3.5,
        "channel": "web",
        "event_time": NOW_MS,
        "quantity": 2,
    },
    "competitor_price": {
        "event_id": "p-1",
        "sku": "snacks-00001",
        "competitor": "acme",
        "price": 3.2,
        "in_stock": True,
        "event_time": NOW_MS,
    },
    "review": {
        "review_id": "r-1",
        "sku": "snacks-00001",
        "rating": 4,
        "text": "Tasty.",
        "user_key": "0123456789abcdef0123456789abcdef",
        "event_time": NOW_MS,
    },
}


def test_the_valid_fixtures_are_valid() -> None:
    for name, record in VALID.items():
        assert check_event(name, json.dumps(record).encode()) == (record, None)


@pytest.mark.parametrize("name", EVENT_NAMES)
@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_every_malformed_class_fails_validation(name: str, kind: str) -> None:
    rng = random.Random(0)
    for _ in range(20):  # several draws: truncation points, bad timestamps, unknown fields vary
        raw = malformed_bytes(name, VALID[name], kind, rng)  # type: ignore[arg-type]
        record, reason = check_event(name, raw)
        assert record is None and reason, (kind, raw[:200])


def test_malformed_classes_hit_the_intended_checks() -> None:
    rng = random.Random(1)
    expected: dict[MalformedKind, str] = {
        "truncated_json": "bad_json",
        "nan": "bad_json",
        "non_utf8": "bad_encoding",
        "oversize": "too_large",
        "missing_field": "missing_field",
        "negative_price": "out_of_range",
        "wrong_type": "wrong_type",
    }
    for kind, code in expected.items():
        _, reason = check_event(
            "competitor_price", malformed_bytes("competitor_price", VALID["competitor_price"], kind, rng)
        )
        assert reason is not None and reason.startswith(code), (kind, reason)


def _inject(faults: FaultsSpec, n: int = 20_000) -> list[Any]:
    injector = FaultInjector(faults, random.Random(42))
    emissions = []
    for i in range(n):
        record = {**VALID["competitor_price"], "event_id": f"p-{i}", "event_time": NOW_MS + i * 1000}
        emissions.extend(injector.apply("competitor_price", record, now_ms=NOW_MS + i * 1000))
    return emissions


def test_fault_shares_are_within_tolerance() -> None:
    faults = FaultsSpec(out_of_order_share=0.1, late_share=0.05, duplicate_share=0.08, malformed_share=0.03)
    n = 20_000
    emissions = _inject(faults, n)
    originals = [e for e in emissions if not e.duplicate]
    assert len(originals) == n
    shares = {
        "duplicate": sum(e.duplicate for e in emissions) / n,
        "malformed": sum(e.malformed is not None for e in originals) / n,
        "late": sum(e.timing == "late" for e in originals) / n,
        "out_of_order": sum(e.timing == "out_of_order" for e in originals) / n,
    }
    assert shares["duplicate"] == pytest.approx(0.08, abs=0.01)
    assert shares["malformed"] == pytest.approx(0.03, abs=0.008)
    # late and out-of-order are shares of all source events; malformed ones are neither
    assert shares["late"] == pytest.approx(0.05, abs=0.008)
    assert shares["out_of_order"] == pytest.approx(0.10, abs=0.012)


def test_time_shifts_respect_the_watermark_bounds() -> None:
    faults = FaultsSpec(
        out_of_order_share=0.3,
        late_share=0.3,
        duplicate_share=0.0,
        malformed_share=0.0,
        max_out_of_orderness_ms=5_000,
        allowed_lateness_ms=2_000,
    )
    injector = FaultInjector(faults, random.Random(7))
    for i in range(3_000):
        now = NOW_MS + i * 10
        [emission] = injector.apply("competitor_price", {**VALID["competitor_price"], "event_time": now}, now_ms=now)
        assert emission.record is not None
        shift = now - emission.record["event_time"]
        assert json.loads(emission.value) == emission.record
        if emission.timing == "late":
            assert shift > 5_000 + 2_000
        elif emission.timing == "out_of_order":
            assert 0 < shift < 5_000
        else:
            assert shift == 0


def test_duplicates_repeat_the_same_bytes_and_id() -> None:
    faults = FaultsSpec(out_of_order_share=0, late_share=0, duplicate_share=1.0, malformed_share=0)
    emissions = _inject(faults, 50)
    assert len(emissions) == 100
    for first, second in zip(emissions[::2], emissions[1::2], strict=True):
        assert not first.duplicate and second.duplicate
        assert first.value == second.value and first.key == second.key == b"snacks-00001"


def test_no_faults_means_clean_bytes() -> None:
    faults = FaultsSpec(out_of_order_share=0, late_share=0, duplicate_share=0, malformed_share=0)
    for name, record in VALID.items():
        [emission] = FaultInjector(faults, random.Random(0)).apply(name, record, NOW_MS)  # type: ignore[arg-type]
        assert emission.timing == "on_time" and emission.malformed is None
        assert check_event(name, emission.value) == (record, None)
