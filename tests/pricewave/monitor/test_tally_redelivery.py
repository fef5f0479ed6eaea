"""The monitor counts each price decision once, by ``decision_id``, however often the topic holds it.

Pure (no broker): records are folded into a :class:`StreamTally` as the monitor's feed does.
"""

from __future__ import annotations

from typing import Any

from pricewave.config import load_settings
from pricewave.kafka_io import encode_json
from pricewave.monitor.tally import StreamTally

T0 = 1_767_225_600_000


def decision(n: int, *, price: float | None = None) -> dict[str, Any]:
    offer = n % 3 == 2
    return {
        "decision_id": f"{n:032x}",
        "kind": "offer" if offer else "sku",
        "sku": f"S{n % 4}",
        "user_key": "0" * 32 if offer else None,
        "price": 10.0 + n if price is None else price,
        "base_price": 10.0,
        "guardrail": "floor" if n % 2 else None,
        "guardrails": ["floor"] if n % 2 else [],
        "model_version": "m1",
        "propensity": 0.5 if n == 0 else 1.0,
        "personalized": offer,
        "decision_time": T0 + n * 1000 + 50,
        "event_time": T0 + n * 1000,
    }


def fold(tally: StreamTally, records: list[dict[str, Any]]) -> None:
    for record in records:
        tally.add(tally.topics.prices, encode_json(record))


def figures(tally: StreamTally) -> dict[str, Any]:
    prices = tally.price_figures()
    prices.pop("updates_per_minute")  # arrival times differ
    prices.pop("redelivered")
    skus = {sku: (f.published_price, f.offers, f.last_offer) for sku, f in tally.skus.items()}
    return {"prices": prices, "offers_seen": tally.offers_seen, "skus": skus, "series": tally.sku_series("S0")}


def test_a_second_delivery_of_the_same_decisions_changes_no_figure() -> None:
    topics = load_settings(env={}).topics
    once, twice = StreamTally(topics), StreamTally(topics)
    decisions = [decision(n) for n in range(12)]
    fold(once, decisions)
    fold(twice, decisions)
    fold(twice, decisions)  # e.g. the job run again from the earliest offsets over the same input
    assert figures(twice) == figures(once)
    assert twice.price_figures()["total"] == 12 and twice.price_figures()["by_kind"] == {"sku": 8, "offer": 4}
    assert twice.offers_seen == 4
    assert twice.price_figures()["redelivered"] == 12 and once.price_figures()["redelivered"] == 0
    assert twice.counts[topics.prices] == 24  # records on the topic, for its rate


def test_records_without_an_id_are_never_taken_for_redeliveries() -> None:
    tally = StreamTally(load_settings(env={}).topics)
    record = decision(1)
    del record["decision_id"]
    fold(tally, [record, record])
    tally.add(tally.topics.prices, b"not json")
    assert tally.price_figures()["total"] == 2 and tally.redelivered == 0


def test_only_the_last_remembered_ids_are_recognised() -> None:
    tally = StreamTally(load_settings(env={}).topics, remembered_decisions=3)
    fold(tally, [decision(n) for n in range(5)])
    fold(tally, [decision(4), decision(2)])  # remembered: redeliveries
    fold(tally, [decision(0)])  # forgotten: counted again
    assert tally.redelivered == 2 and tally.price_total == 6
    assert len(tally.decision_ids) == len(tally.decision_order) == 3
