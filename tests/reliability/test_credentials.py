"""Clients against a broker that requires SASL/SCRAM and a Redis that requires a password.

A PRIVATE Kafka 4 broker (the stack's jars, free loopback ports, temporary state directory)
listens with SASL_PLAINTEXT only; its SCRAM-SHA-256 users are created when the storage is
formatted (``kafka.tools.StorageTool format --add-scram``). pricewave's Kafka clients
(:mod:`pricewave.kafka_io`: producers, consumers, admin; the simulator's producer) must work with
credentials from ``PRICEWAVE_KAFKA_USERNAME`` / ``PRICEWAVE_KAFKA_PASSWORD`` and refuse to start,
with one line that says what to set, without them. The Redis half uses the password-protected
``redis_server`` of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pricewave.config import Settings
from pricewave.errors import ConfigError, StackError
from pricewave.kafka_io import encode_json, ensure_topics, make_admin, make_consumer, make_producer
from pricewave.stack.jars import kafka_classpath
from pricewave.stack.kafka import KafkaService
from tests.reliability.harness import (
    private_settings,
    read_topic,
    the_job_prices_through,
    wait_ready,
)

pytestmark = pytest.mark.integration

MECHANISM = "SCRAM-SHA-256"
CLIENT_USER = "pricewave-app"
CLIENT_PASSWORD = uuid.uuid4().hex  # made up per run: nothing to leak
BROKER_USER = "broker"
BROKER_PASSWORD = uuid.uuid4().hex


class ScramKafka(KafkaService):
    """The stack's broker with a SASL_PLAINTEXT listener and SCRAM users made at format time."""

    def server_properties(self) -> str:
        kafka = self.settings.kafka
        plain = super().server_properties().splitlines()
        replaced = {
            "listeners": f"SASL_PLAINTEXT://{kafka.host}:{kafka.port},CONTROLLER://{kafka.host}:{kafka.controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://{kafka.host}:{kafka.port}",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
        }
        lines = [
            f"{line.split('=', 1)[0]}={replaced[line.split('=', 1)[0]]}" if line.split("=", 1)[0] in replaced else line
            for line in plain
        ]
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{BROKER_PASSWORD}";'
        )
        lines += [
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
            "",
        ]
        return "\n".join(lines)

    def _format_storage(self) -> None:
        data_dir = self.home / "data"
        if (data_dir / "meta.properties").exists():
            return
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            "java", "-cp", kafka_classpath(self.settings), "kafka.tools.StorageTool", "format",
            "--cluster-id", uuid.uuid4().hex[:22], "--config", str(self.home / "server.properties"), "--standalone",
            "--add-scram", f"{MECHANISM}=[name={BROKER_USER},password={BROKER_PASSWORD}]",
            "--add-scram", f"{MECHANISM}=[name={CLIENT_USER},password={CLIENT_PASSWORD}]",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    def _create_topics(self) -> bool:
        return True  # topics are made by the tests, with credentials


def with_credentials(monkeypatch: pytest.MonkeyPatch, user: str | None, password: str | None) -> None:
    for name, value in (("PRICEWAVE_KAFKA_USERNAME", user), ("PRICEWAVE_KAFKA_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def scram_broker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    state = tmp_path_factory.mktemp("scram") / "state"
    private = private_settings(state)
    state.mkdir(parents=True)
    (state / "jars").symlink_to(settings.path("jars").resolve())
    kafka = private.kafka.model_copy(update={"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": MECHANISM})
    secured = private.model_copy(update={"kafka": kafka})
    service = ScramKafka(secured)
    service.install()
    service.start()
    try:
        wait_ready(service)
        yield secured
    finally:
        service.stop()


def test_clients_and_simulator_work_with_credentials_from_the_environment(
    scram_broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pricewave.simulator.runner import Simulator
    from pricewave.simulator.scenario import load_scenario

    with_credentials(monkeypatch, CLIENT_USER, CLIENT_PASSWORD)
    topic = f"secured-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(scram_broker, [topic], partitions=1) == [topic]
    producer = make_producer(scram_broker)
    for n in range(20):
        producer.send(topic, encode_json({"n": n}), key=b"k")
    producer.flush()
    producer.close()
    assert [json.loads(r.value)["n"] for r in read_topic(scram_broker, topic)] == list(range(20))

    settings = scram_broker.model_copy(
        update={"topics": scram_broker.topics.model_copy(update={"clicks": topic, "partitions": 1})}
    )
    ensure_topics(settings, settings.topics.input_names(), partitions=1)
    simulator = Simulator(load_scenario("small"), settings, seed=3, review_texts=["fine"])
    summary = simulator.run_to_kafka(rate=None, max_events=300, closed_loop=False, progress=False)
    assert summary.messages == 300 and summary.delivery_errors == 0
    received = sum(len(read_topic(settings, name)) for name in settings.topics.input_names())
    assert received == 20 + 300


def test_clients_refuse_to_start_without_credentials(scram_broker: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with_credentials(monkeypatch, None, None)
    for make in (lambda: make_producer(scram_broker), lambda: make_consumer(scram_broker, ["x"]),
                 lambda: make_admin(scram_broker)):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            make()
        message = str(caught.value)
        assert "\n" not in message
        assert "PRICEWAVE_KAFKA_USERNAME" in message and "PRICEWAVE_KAFKA_PASSWORD" in message


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "pricewave", "simulate", "--scenario", "small", "--duration", "2", "--rate", "10"],
        ["jobs/pricing_job.py", "--bounded"],  # refuses before its JVM starts
    ],
    ids=["cli", "flink-job"],
)
def test_without_credentials_prints_one_line_and_exits_2(
    scram_broker: Settings, tmp_path: Path, command: list[str]
) -> None:
    from pricewave.stack.process import child_environment

    credentials = ("PRICEWAVE_KAFKA_USER", "PRICEWAVE_KAFKA_PASS")
    env = {key: value for key, value in child_environment().items() if not key.startswith(credentials)}
    env.update(
        {
            "PRICEWAVE_STATE_DIR": str(tmp_path),
            "PRICEWAVE_KAFKA__PORT": str(scram_broker.kafka.port),
            "PRICEWAVE_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PRICEWAVE_KAFKA__SASL_MECHANISM": MECHANISM,
        }
    )
    result = subprocess.run(
        [sys.executable, *command], cwd=Path(__file__).resolve().parents[2],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PRICEWAVE_KAFKA_USERNAME" in lines[0], result.stderr


def test_pricing_job_runs_against_the_scram_broker(
    scram_broker: Settings, applied_feature_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Flink job's Kafka tables (sources, dead letters, exactly-once prices) log in with SCRAM too."""
    with_credentials(monkeypatch, CLIENT_USER, CLIENT_PASSWORD)
    the_job_prices_through(scram_broker, applied_feature_repo, tmp_path, events=2000)


def test_wrong_password_and_plaintext_clients_are_refused(
    scram_broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_credentials(monkeypatch, CLIENT_USER, "not-the-password")
    with pytest.raises(StackError, match="PRICEWAVE_KAFKA_PASSWORD"):
        make_admin(scram_broker)
    # A client that does not speak SASL gets nothing from this listener.
    plaintext = scram_broker.model_copy(
        update={"kafka": scram_broker.kafka.model_copy(update={"security_protocol": "PLAINTEXT"})}
    )
    with pytest.raises(StackError):
        make_admin(plaintext)


def test_feature_store_on_password_protected_redis(
    redis_server: object, feature_repo_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pricewave.config import load_settings
    from pricewave.feature_store import FeatureWriter, open_store

    host, port, password = redis_server.host, redis_server.port, redis_server.password  # type: ignore[attr-defined]
    monkeypatch.setenv("PRICEWAVE_REDIS__HOST", host)
    monkeypatch.setenv("PRICEWAVE_REDIS__PORT", str(port))
    monkeypatch.setenv("PRICEWAVE_REDIS_PASSWORD", password)
    row = {"sku": "SEC-1", "base_price": 9.99, "cost": 4.0, "map_price": None, "ceiling_price": 15.0,
           "category": "coffee", "event_time": 1_767_225_600_000}  # fmt: skip
    store = open_store(load_settings(), repo_path=str(feature_repo_copy), profile="redis")
    assert FeatureWriter(store).write("sku_catalog", [row]).written == 1
    read = store.get_online_features(features=["sku_catalog:base_price"], entity_rows=[{"sku": "SEC-1"}]).to_dict()
    assert read["base_price"] == [9.99]

    # Without the password (or with a wrong one) opening the store fails at once, in one line.
    monkeypatch.delenv("PRICEWAVE_REDIS_PASSWORD")
    with pytest.raises(StackError, match=r"requires a password.*: set PRICEWAVE_REDIS_PASSWORD") as caught:
        open_store(load_settings(), repo_path=str(feature_repo_copy), profile="redis")
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("PRICEWAVE_REDIS_PASSWORD", "not-the-password")
    with pytest.raises(StackError, match=r"rejected the password .*PRICEWAVE_REDIS_PASSWORD"):
        open_store(load_settings(), repo_path=str(feature_repo_copy), profile="redis")
