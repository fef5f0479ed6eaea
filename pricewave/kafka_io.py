"""Kafka clients configured from settings: one place that builds producers, consumers, admins.

Example:
    >>> from pricewave.config import load_settings
    >>> producer_config(load_settings(env={}))["bootstrap_servers"]
    'localhost:9092'
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    IncompatibleBrokerVersion,
    InvalidReplicationFactorError,
    KafkaConnectionError,
    KafkaError,
    NoBrokersAvailable,
    NodeNotReadyError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
)

from pricewave.config import KAFKA_PASSWORD_ENV, KAFKA_USERNAME_ENV, Settings
from pricewave.errors import ConfigError, StackError


def security_config(settings: Settings) -> dict[str, Any]:
    """How every client connects: nothing for PLAINTEXT; TLS (with ``kafka.ssl_ca_location``, the CA
    that signed the broker's certificate) for SSL and SASL_SSL; SASL settings and credentials for SASL.

    Raises:
        ConfigError: SASL is configured but the mechanism or the credentials (environment only) are
            missing, or ``kafka.ssl_ca_location`` names no readable file.
    """
    kafka = settings.kafka
    config: dict[str, Any] = {}
    if kafka.uses_tls:
        config["security_protocol"] = kafka.security_protocol
        config.update(_tls_config(settings))
    if not kafka.uses_sasl:
        return config
    if kafka.sasl_mechanism is None:
        raise ConfigError(
            f"kafka.security_protocol={kafka.security_protocol} needs kafka.sasl_mechanism (e.g. SCRAM-SHA-256)"
        )
    if not kafka.username or not kafka.password:
        raise ConfigError(
            f"Kafka at {kafka.bootstrap_servers} requires {kafka.sasl_mechanism} credentials: "
            f"set {KAFKA_USERNAME_ENV} and {KAFKA_PASSWORD_ENV}"
        )
    return {
        **config,
        "security_protocol": kafka.security_protocol,
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.username,
        "sasl_plain_password": kafka.password,
    }


def _ca_file(settings: Settings) -> Path | None:
    """``kafka.ssl_ca_location`` as an absolute path, checked; None when unset (the system's CAs)."""
    location = settings.kafka.ssl_ca_location
    if not location:
        return None
    path = Path(location).expanduser().resolve()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"kafka.ssl_ca_location={location} is not a readable file (the PEM of the broker's CA)")
    return path


def _tls_config(settings: Settings) -> dict[str, Any]:
    """kafka-python's TLS arguments: verify the broker's certificate and host name against the CA."""
    ca = _ca_file(settings)
    config: dict[str, Any] = {"ssl_check_hostname": True}
    if ca is not None:
        config["ssl_cafile"] = str(ca)
    return config


# The Kafka clients inside Flink's SQL connector are shaded: JAAS must name the shaded login modules.
_SHADED_KAFKA = "org.apache.flink.kafka.shaded.org.apache.kafka"
_LOGIN_MODULES = {
    "SCRAM-SHA-256": f"{_SHADED_KAFKA}.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": f"{_SHADED_KAFKA}.common.security.scram.ScramLoginModule",
    "PLAIN": f"{_SHADED_KAFKA}.common.security.plain.PlainLoginModule",
}


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def flink_security_properties(settings: Settings) -> dict[str, str]:
    """The same TLS and authentication as :func:`security_config`, as Java client properties for Flink's
    connector (the CA as a PEM truststore: ``ssl.truststore.type=PEM``, ``ssl.truststore.location``).

    Raises:
        ConfigError: SASL is configured but the mechanism or the credentials are missing, or the CA
            file is not readable.

    Example:
        >>> from pricewave.config import Settings
        >>> flink_security_properties(Settings())
        {}
    """
    python = security_config(settings)
    if not python:
        return {}
    properties = {"security.protocol": python["security_protocol"]}
    if "ssl_cafile" in python:
        # A PEM truststore (Kafka clients >= 2.7): the CA file itself, no JKS to build.
        properties["ssl.truststore.type"] = "PEM"
        properties["ssl.truststore.location"] = python["ssl_cafile"]
    if "sasl_mechanism" not in python:
        return properties
    module = _LOGIN_MODULES[python["sasl_mechanism"]]
    username, password = _jaas_quote(python["sasl_plain_username"]), _jaas_quote(python["sasl_plain_password"])
    return {
        **properties,
        "sasl.mechanism": python["sasl_mechanism"],
        "sasl.jaas.config": f"{module} required username={username} password={password};",
    }


# What a client sees when it cannot reach a broker, or reaches one that refuses its login (a failed
# SASL handshake surfaces as a failed API-version probe); a certificate it cannot verify raises the
# ssl module's error from the handshake.
# NodeNotReadyError: a broker that has just restarted answers the bootstrap connection before it
# serves as the controller the admin client then asks for.
_NOT_CONNECTED = (
    NoBrokersAvailable, KafkaConnectionError, NodeNotReadyError, IncompatibleBrokerVersion,
    SaslAuthenticationFailedError, ssl.SSLError,
)  # fmt: skip


def _unreachable(settings: Settings, error: BaseException | None = None) -> StackError:
    where = settings.kafka.bootstrap_servers
    kafka = settings.kafka
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or error.reason
        if kafka.ssl_ca_location:
            hint = f"is kafka.ssl_ca_location={kafka.ssl_ca_location} the CA that signed it, for {kafka.host}?"
        else:
            hint = "set kafka.ssl_ca_location (PRICEWAVE_KAFKA__SSL_CA_LOCATION) to the PEM of the CA that signed it"
        return StackError(
            f"the Kafka broker at {where} ({kafka.security_protocol}) presented a certificate this client cannot "
            f"verify ({reason}): {hint}"
        )
    if kafka.uses_tls:
        trusted = (
            f"kafka.ssl_ca_location={kafka.ssl_ca_location}" if kafka.ssl_ca_location
            else "the system's CAs (set kafka.ssl_ca_location / PRICEWAVE_KAFKA__SSL_CA_LOCATION for a private CA)"
        )  # fmt: skip
        login = f", with a {kafka.sasl_mechanism} login ({KAFKA_USERNAME_ENV} / {KAFKA_PASSWORD_ENV})" if (
            kafka.uses_sasl
        ) else ""  # fmt: skip
        return StackError(
            f"no Kafka broker at {where} completed a {kafka.security_protocol} connection{login}: check that it "
            f"runs, that its certificate names {kafka.host} and is signed by a CA in {trusted}"
        )
    if settings.kafka.uses_sasl:
        return StackError(
            f"no Kafka broker at {where} accepted a {settings.kafka.sasl_mechanism} login: check that it runs "
            f"and that {KAFKA_USERNAME_ENV} / {KAFKA_PASSWORD_ENV} are right"
        )
    return StackError(f"no Kafka broker answers at {where}: run 'pricewave stack up' first")


def producer_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for :class:`kafka.KafkaProducer`."""
    return {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "compression_type": None,
        "client_id": "pricewave",
        **security_config(settings),
    }


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer for raw bytes (values are encoded by the caller)."""
    try:
        return KafkaProducer(**{**producer_config(settings), **overrides})
    except _NOT_CONNECTED as exc:
        raise _unreachable(settings, exc) from None


def make_consumer(
    settings: Settings,
    topics: Iterable[str],
    *,
    group_id: str | None = None,
    read_committed: bool = True,
    from_beginning: bool = True,
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer of raw bytes; ``read_committed`` hides aborted exactly-once transactions."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "group_id": group_id,
        "auto_offset_reset": "earliest" if from_beginning else "latest",
        "enable_auto_commit": group_id is not None,
        "isolation_level": "read_committed" if read_committed else "read_uncommitted",
        "consumer_timeout_ms": 1000,
        **security_config(settings),
    }
    config.update(overrides)
    try:
        return KafkaConsumer(*topics, **config)
    except _NOT_CONNECTED as exc:
        raise _unreachable(settings, exc) from None


def read_topic_values(settings: Settings, topic: str, *, timeout_s: float = 120.0) -> Iterator[bytes | None]:
    """Every committed record value of ``topic``, from its beginning to its last stable offset now.

    Raises:
        StackError: The broker does not answer (from the consumer factory).
        TimeoutError: The topic could not be read to its end within ``timeout_s``.
    """
    for _, value in _read_to_end(settings, topic, last=None, timeout_s=timeout_s):
        yield value


def read_partition_tails(
    settings: Settings, topic: str, last: int, *, timeout_s: float = 120.0
) -> dict[int, list[bytes | None]]:
    """The last ``last`` committed record values of each partition of ``topic``, in offset order.

    Raises:
        StackError: The broker does not answer (from the consumer factory).
        TimeoutError: The tails could not be read within ``timeout_s``.
    """
    tails: dict[int, list[bytes | None]] = {}
    for partition, value in _read_to_end(settings, topic, last=last, timeout_s=timeout_s):
        tails.setdefault(partition, []).append(value)
    return tails


def _read_to_end(
    settings: Settings, topic: str, *, last: int | None, timeout_s: float
) -> Iterator[tuple[int, bytes | None]]:
    """(partition, value) of each committed record from the beginning (or the last ``last`` of each
    partition) to the last stable offset now."""
    from kafka import TopicPartition

    fetch_bytes = 4 * 1024 * 1024
    consumer = make_consumer(
        settings,
        [],
        read_committed=True,
        consumer_timeout_ms=500,
        max_partition_fetch_bytes=fetch_bytes,
        fetch_max_bytes=fetch_bytes,
        # A fetch answer holds up to fetch_max_bytes of records plus framing: the client's default
        # frame limit (1 MB) would drop and retry it ("Invalid frame length") on a busy topic.
        receive_message_max_bytes=2 * fetch_bytes,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)  # the last stable offset under read_committed
        if last is None:
            consumer.seek_to_beginning(*partitions)
        else:
            begin = consumer.beginning_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, max(begin[tp], end[tp] - last))
        deadline = time.monotonic() + timeout_s
        while not all(consumer.position(tp) >= end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read topic {topic!r} to its end within {timeout_s:.0f} s")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for record in batch:
                    if last is None or record.offset < end[tp]:  # a tail is exactly the last records
                        yield tp.partition, record.value
    finally:
        consumer.close()


def make_admin(settings: Settings) -> KafkaAdminClient:
    """An admin client, with a clear error when the broker is down."""
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka.bootstrap_servers, client_id="pricewave-admin", **security_config(settings)
        )
    except _NOT_CONNECTED as exc:
        raise _unreachable(settings, exc) from None


def ensure_topics(settings: Settings, names: Iterable[str] | None = None, partitions: int | None = None) -> list[str]:
    """Create the given topics (default: all of pricewave's) if they do not exist.

    Returns:
        The names that were created now (existing ones are left as they are).
    """
    # Unique names: two roles may share a topic (Kafka refuses a request that names one twice).
    names = list(dict.fromkeys(names if names is not None else settings.topics.all_names()))
    partitions = partitions or settings.topics.partitions
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            new_topics = [
                NewTopic(
                    name=name,
                    num_partitions=partitions,
                    replication_factor=settings.topics.replication_factor,
                    topic_configs={"retention.ms": str(settings.topics.retention_ms_of(name))},
                )
                for name in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new_topics)
        return missing
    except InvalidReplicationFactorError:
        raise StackError(
            f"could not create topics on {settings.kafka.bootstrap_servers}: topics.replication_factor="
            f"{settings.topics.replication_factor} is more than the cluster's brokers "
            "(set PRICEWAVE_TOPICS__REPLICATION_FACTOR to at most their number)"
        ) from None
    except KafkaError as exc:
        raise StackError(f"could not create topics on {settings.kafka.bootstrap_servers}: {exc}") from None
    finally:
        admin.close()


def encode_json(record: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the wire format of every pricewave topic."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8")


def send_heartbeats(producer: KafkaProducer, topic: str, event_time_ms: int, source: str) -> int:
    """A heartbeat (``schemas/heartbeat``) at ``event_time_ms`` to every partition of ``topic``.

    The pricing job's watermark is the minimum over partitions, so each partition needs its own:
    a partition that only hears heartbeats then moves with them instead of holding every window
    back until an idleness timeout (which a replay would not reproduce). The producer's later records
    on ``topic`` must not be older than ``event_time_ms`` minus the job's out-of-orderness.

    Returns:
        The number of heartbeats sent (the topic's partitions).

    Example:
        >>> from pricewave.config import load_settings                                  # doctest: +SKIP
        >>> producer = make_producer(load_settings())                                  # doctest: +SKIP
        >>> send_heartbeats(producer, "competitor-prices", 1767225600000, "crawler")  # doctest: +SKIP
        2
    """
    value = encode_json({"heartbeat": source, "event_time": int(event_time_ms)})
    partitions = sorted(producer.partitions_for(topic) or ())
    for partition in partitions:
        producer.send(topic, value=value, partition=partition)
    return len(partitions)
