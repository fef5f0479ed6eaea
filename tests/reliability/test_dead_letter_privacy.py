"""Raw user ids sent by a buggy producer do not reach the dead-letter topic.

A producer that sends raw ids (``"user_key": "dlp-user-3"``, a ``user_id`` field, a truncated
record, JSON held in a JSON string, UTF-16) gets its records rejected, and the job dead-letters
their bytes: before the fix the dead letter kept them base64-encoded for the topic's whole
retention, where a plain-text privacy scan could not see them. One bounded run of the real job
(MiniCluster, tiny input) shows that every such record is dead-lettered with each raw id replaced
by its keyed pseudonym (flagged in ``pseudonymized``), the rest of its bytes kept, and that the
decoding scan (:func:`tests.reliability.harness.find_raw_ids`) finds no raw id in the topic, while
it does find one planted the way the job used to write it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from pricewave.config import USER_KEY_SECRET_ENV, Settings
from pricewave.job import build_pipeline, create_table_environment
from pricewave.kafka_io import encode_json, make_producer
from pricewave.privacy import pseudonymize_raw_ids, pseudonymize_user
from pricewave.schemas import check_event, validate_record
from tests.reliability.harness import T0, bounded_options, find_raw_ids, fresh_topics, read_topic

RAW_ID = re.compile(rb"dlp-user-\d+")
SECRET = "dead-letter-privacy-test-secret-0123456789"


def click(n: int, user_key: str) -> dict[str, object]:
    return {
        "event_id": f"d{n}",
        "event_type": "view",
        "user_key": user_key,
        "session_id": f"s{n % 3}",
        "sku": "dlp-sku",
        "price_seen": 10.0,
        "channel": "web",
        "event_time": T0 + n * 1000,
    }


def leaky_records() -> list[bytes]:
    """Rejected records that hold raw ids, valid-looking and malformed."""
    good = click(0, pseudonymize_user("dlp-user-0", SECRET.encode()))
    raw_key = encode_json(click(1, "dlp-user-1"))  # the raw id where the key belongs
    cut = encode_json(click(4, "dlp-user-44"))
    return [
        raw_key,
        # extra fields named like a raw id, in records rejected for another reason (an extra field
        # alone is accepted: the input schemas are fully compatible, and the job drops it)
        encode_json({**good, "user_id": "dlp-user-2", "price_seen": -1}),
        encode_json({**good, "raw_user_id": "dlp-user-3", "customerId": 40417, "channel": "fax"}),
        cut[: cut.index(b"dlp-user-44") + 10],  # truncated inside the id: "dlp-user-4" is left
        encode_json(click(5, "dlp-user-5"))[:-20],  # truncated after the id
        b"\xe9" + encode_json(click(6, "dlp-user-6")),  # not UTF-8
        json.dumps({"payload": json.dumps({"user_id": "dlp-user-7"})}).encode(),  # JSON in JSON
        json.dumps(click(8, "dlp-user-8")).encode("utf-16"),  # UTF-16 with a byte order mark
        json.dumps({**good, "user_key": "dlp-user-9", "email": "dlp-user-9"}, indent=1).encode(),
    ]


# --- the scan and the pseudonymizer, without a job -----------------------------------------------


def test_the_scan_finds_raw_ids_hidden_in_base64_and_json_in_json() -> None:
    record = encode_json(click(1, "dlp-user-1"))
    letter = encode_json({"reason": "bad_pattern: user_key", "raw_b64": base64.b64encode(record).decode()})
    assert RAW_ID.search(letter) is None  # what a plain-text scan sees: nothing
    assert find_raw_ids(RAW_ID, letter) == [b"dlp-user-1"]
    nested = json.dumps({"a": json.dumps({"b": "dlp-user-2"})}).encode().replace(b"d", b"\\u0064")
    assert RAW_ID.search(nested) is None and find_raw_ids(RAW_ID, nested) == [b"dlp-user-2"]
    # Inside a binary file (a broker segment), not aligned to a base64 quantum, in UTF-16.
    segment = b"\x00\x07xyz" + base64.b64encode(b"ab" + json.dumps({"u": "dlp-user-3"}).encode("utf-16")) + b"\x00"
    assert find_raw_ids(RAW_ID, segment) == [b"dlp-user-3"]
    assert find_raw_ids(RAW_ID, encode_json({"raw_b64": base64.b64encode(b"nothing").decode()})) == []


def test_every_leaky_record_is_pseudonymized_and_nothing_else_changes() -> None:
    secret = SECRET.encode()
    for raw in leaky_records():
        kept, fields = pseudonymize_raw_ids(raw, secret)
        assert fields, raw
        assert find_raw_ids(RAW_ID, kept) == [], (raw, kept)
    # A valid record and one without a user field are returned as they are.
    valid = encode_json(click(0, pseudonymize_user("dlp-user-0", secret)))
    assert pseudonymize_raw_ids(valid, secret) == (valid, [])
    assert pseudonymize_raw_ids(b'{"sku":"A","session_id":"x"', secret) == (b'{"sku":"A","session_id":"x"', [])
    # Only the value changes: the key is the producer's pseudonym of the raw id.
    kept, fields = pseudonymize_raw_ids(b'{"a":1, "user_key" : "dlp-user-1","b":[2]}', secret)
    key = pseudonymize_user("dlp-user-1", secret).encode()
    assert (kept, fields) == (b'{"a":1, "user_key" : "' + key + b'","b":[2]}', ["user_key"])


# --- the real job ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_dead_letters_of_a_buggy_producer_hold_no_raw_user_id(
    kafka_stack: Settings, applied_feature_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(USER_KEY_SECRET_ENV, SECRET)  # the job carries it to its workers
    repo = tmp_path / "feature_repo"
    shutil.copytree(applied_feature_repo, repo)
    settings = fresh_topics(kafka_stack).model_copy(update={"feature_repo": str(repo)})
    leaky = leaky_records()
    producer = make_producer(settings)
    offsets: dict[int, bytes] = {}
    futures: list[tuple[bytes | None, Any]] = []
    for n in range(20):  # a normal stream around the leaky records
        good = click(100 + n, pseudonymize_user(f"dlp-user-{n}", SECRET.encode()))
        if n % 5 == 0:  # valid, with a raw id in a field the schema does not know: accepted, the field dropped
            good["user_id"] = f"dlp-user-{200 + n}"
        futures.append((None, producer.send(settings.topics.clicks, encode_json(good), key=b"k")))
        if n < len(leaky):
            futures.append((leaky[n], producer.send(settings.topics.clicks, leaky[n], key=b"k")))
    producer.flush()
    for raw, future in futures:
        if raw is not None:
            offsets[future.get(timeout=60).offset] = raw
    producer.close()
    assert all(check_event("click_event", raw)[1] for raw in offsets.values())  # all rejected
    assert all(find_raw_ids(RAW_ID, raw) for raw in offsets.values())  # and each holds a raw id

    options = bounded_options(decision_log_dir=str(tmp_path / "decisions"))
    t_env = create_table_environment(settings, options)
    build_pipeline(t_env, settings, options).execute().wait()

    # The accepted records' extra raw ids went no further than the job's reader.
    prices = read_topic(settings, settings.topics.prices)
    assert all(find_raw_ids(RAW_ID, r.value or b"") == [] for r in prices)
    for path in (tmp_path / "decisions").rglob("*"):
        if path.is_file():
            assert find_raw_ids(RAW_ID, path.read_bytes()) == [], path

    records = read_topic(settings, settings.topics.dlq, read_committed=False)
    letters = {json.loads(r.value)["offset"]: json.loads(r.value) for r in records}
    assert set(letters) == set(offsets), "every leaky record is dead-lettered, nothing else"
    for record in records:
        assert find_raw_ids(RAW_ID, record.value or b"") == [], f"raw user id in dead letter {record.value!r}"
    for offset, raw in offsets.items():
        letter = letters[offset]
        validate_record("dead_letter", letter)
        kept, fields = pseudonymize_raw_ids(raw, SECRET.encode())
        assert base64.b64decode(letter["raw_b64"]) == kept  # the rest byte for byte, the job's secret
        assert letter["pseudonymized"] == ",".join(dict.fromkeys(fields))
        assert letter["raw_size"] == len(raw)  # as received
        assert letter["reason"] == check_event("click_event", raw)[1]

    # The scan can fail: a dead letter written the way the job used to (raw bytes as received).
    planted = encode_json({"reason": "bad_pattern: user_key", "raw_b64": base64.b64encode(leaky[0]).decode()})
    producer = make_producer(settings)
    planted_at = producer.send(settings.topics.dlq, planted, key=None).get(timeout=60).offset
    producer.close()
    found = [
        r.offset
        for r in read_topic(settings, settings.topics.dlq, read_committed=False)
        if find_raw_ids(RAW_ID, r.value or b"")
    ]
    assert found == [planted_at], found


@pytest.mark.integration
def test_the_dead_letter_topic_is_created_with_its_shorter_retention(kafka_stack: Settings) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    from pricewave.kafka_io import ensure_topics, make_admin

    suffix = uuid.uuid4().hex[:8]
    topics = kafka_stack.topics.model_copy(
        update={"clicks": f"rel-ret-clicks-{suffix}", "dlq": f"rel-ret-dlq-{suffix}"}
    )
    settings = kafka_stack.model_copy(update={"topics": topics})
    assert settings.topics.dlq_retention_ms < settings.topics.retention_ms
    ensure_topics(settings, [topics.clicks, topics.dlq], partitions=1)
    admin = make_admin(settings)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in (topics.clicks, topics.dlq)]
        retention = {}
        for response in admin.describe_configs(resources):
            for _error, _message, _type, name, entries in response.resources:
                retention[name] = next(int(entry[1]) for entry in entries if entry[0] == "retention.ms")
    finally:
        admin.close()
    assert retention == {topics.clicks: settings.topics.retention_ms, topics.dlq: settings.topics.dlq_retention_ms}
