"""Round trips through the real broker with kafka-python."""

from __future__ import annotations

import uuid

import pytest

from pricewave.config import Settings
from pricewave.errors import StackError
from pricewave.kafka_io import encode_json, ensure_topics, make_admin, make_producer
from tests.conftest import consume_all

pytestmark = pytest.mark.integration


def test_produce_consume_round_trip(kafka_stack: Settings, fresh_topic: str) -> None:
    producer = make_producer(kafka_stack)
    sent = [encode_json({"n": n, "sku": f"sku-{n % 3}"}) for n in range(50)]
    for value in sent:
        producer.send(fresh_topic, value=value, key=b"k")
    producer.flush()
    producer.close()
    received = consume_all(kafka_stack, fresh_topic, expected=50)
    assert [record.value for record in received] == sent  # one key → one partition → order kept


def test_read_committed_hides_aborted_transactions(kafka_stack: Settings, fresh_topic: str) -> None:
    producer = make_producer(kafka_stack, transactional_id=f"test-{uuid.uuid4().hex}")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(fresh_topic, b"aborted", key=b"k")
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(fresh_topic, b"committed", key=b"k")
    producer.commit_transaction()
    producer.close()
    committed = consume_all(kafka_stack, fresh_topic, expected=1, read_committed=True)
    assert [record.value for record in committed] == [b"committed"]
    everything = consume_all(kafka_stack, fresh_topic, expected=2, read_committed=False)
    assert b"aborted" in [record.value for record in everything]


def test_stack_topics_exist_with_configured_partitions(kafka_stack: Settings) -> None:
    admin = make_admin(kafka_stack)
    try:
        described = {t["topic"]: t for t in admin.describe_topics(kafka_stack.topics.all_names())}
    finally:
        admin.close()
    for name in kafka_stack.topics.all_names():
        assert len(described[name]["partitions"]) == kafka_stack.topics.partitions


def test_ensure_topics_is_idempotent(kafka_stack: Settings) -> None:
    name = f"test-idempotent-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(kafka_stack, [name]) == [name]
    assert ensure_topics(kafka_stack, [name]) == []


def test_roles_sharing_one_topic_create_it_once(kafka_stack: Settings) -> None:
    """Clicks, competitor prices and reviews on one topic (as `simulate` allows) is one topic to create."""
    name = f"test-shared-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(kafka_stack, [name, name, name]) == [name]


def test_a_broker_list_with_a_dead_broker_first_still_round_trips(kafka_stack: Settings, fresh_topic: str) -> None:
    from tests.reliability.harness import free_port

    brokers = f"127.0.0.1:{free_port()},{kafka_stack.kafka.bootstrap_servers}"  # nothing listens on the first
    listed = kafka_stack.model_copy(update={"kafka": kafka_stack.kafka.model_copy(update={"bootstrap": brokers})})
    producer = make_producer(listed)
    producer.send(fresh_topic, value=b"via the second broker", key=b"k")
    producer.flush()
    producer.close()
    assert [record.value for record in consume_all(listed, fresh_topic, expected=1)] == [b"via the second broker"]


def test_more_replicas_than_brokers_is_a_clear_error(kafka_stack: Settings) -> None:
    three = kafka_stack.model_copy(update={"topics": kafka_stack.topics.model_copy(update={"replication_factor": 3})})
    with pytest.raises(StackError, match="replication_factor=3 is more than the cluster's brokers") as caught:
        ensure_topics(three, [f"test-rf-{uuid.uuid4().hex[:8]}"])
    assert "\n" not in str(caught.value)


def test_no_broker_is_a_clear_error(kafka_stack: Settings) -> None:
    nowhere = kafka_stack.model_copy(update={"kafka": kafka_stack.kafka.model_copy(update={"port": 1})})
    with pytest.raises(StackError, match="run 'pricewave stack up'"):
        make_producer(nowhere, api_version_auto_timeout_ms=2000)


def test_a_broker_not_ready_yet_is_reported_as_unreachable(
    kafka_stack: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Just after a restart the broker takes the bootstrap connection before it serves as controller:
    start-up waits poll for StackError, so this must be one, not a raw kafka-python error."""
    from kafka.errors import NodeNotReadyError

    import pricewave.kafka_io

    def not_ready(**_config: object) -> None:
        raise NodeNotReadyError("Connection failed to 1")

    monkeypatch.setattr(pricewave.kafka_io, "KafkaAdminClient", not_ready)
    with pytest.raises(StackError, match="run 'pricewave stack up'"):
        make_admin(kafka_stack)
