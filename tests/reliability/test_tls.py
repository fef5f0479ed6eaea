"""Clients against a broker that serves SASL_SSL with a certificate from a private CA.

The test makes a private CA and a broker certificate (``openssl``, in a temporary directory, for
``localhost`` / ``127.0.0.1``) and starts a PRIVATE Kafka 4 broker (the stack's jars, free loopback
ports) whose only client listener is SASL_SSL: a PEM keystore (``ssl.keystore.type=PEM``, the key
and its chain in one file) and the SCRAM users of ``tests/reliability/test_credentials.py``.

* pricewave's Python clients (:mod:`pricewave.kafka_io`) with ``kafka.ssl_ca_location`` produce and
  consume;
* without it (the system's CAs do not know the private one) they fail within seconds, with one line
  that names the setting; so does the CLI; a CA file that does not exist is refused before connecting;
* the Flink job (MiniCluster, bounded; marked slow) reads and writes through the same listener,
  its Kafka connector given the CA as a PEM truststore.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pricewave.config import Settings
from pricewave.errors import ConfigError, StackError
from pricewave.kafka_io import encode_json, ensure_topics, flink_security_properties, make_admin, make_producer
from tests.reliability.harness import (
    private_settings,
    read_topic,
    the_job_prices_through,
    wait_ready,
)
from tests.reliability.test_credentials import CLIENT_PASSWORD, CLIENT_USER, MECHANISM, ScramKafka, with_credentials

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A private CA and a broker certificate signed by it, for localhost and 127.0.0.1.

    Returns:
        The CA's certificate (PEM) and the broker's keystore (PEM: PKCS#8 key, certificate, CA).
    """
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test CA"

    def run(*args: str) -> None:
        result = subprocess.run([openssl, *args], cwd=directory, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=pricewave-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
        "-subj", "/CN=localhost")  # fmt: skip
    (directory / "broker.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    run("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "broker.pem", "-days", "2", "-extfile", "broker.ext")  # fmt: skip
    keystore = directory / "broker-keystore.pem"
    keystore.write_text("".join((directory / name).read_text() for name in ("broker.key", "broker.pem", "ca.pem")))
    assert "BEGIN PRIVATE KEY" in keystore.read_text()  # PKCS#8, what Kafka's PEM keystore reads
    return directory / "ca.pem", keystore


class TlsScramKafka(ScramKafka):
    """The SCRAM broker of test_credentials, its client listener SASL_SSL with a PEM keystore."""

    ca: Path
    keystore: Path

    def server_properties(self) -> str:
        text = super().server_properties()
        text = text.replace("SASL_PLAINTEXT:SASL_PLAINTEXT", "SASL_SSL:SASL_SSL").replace("SASL_PLAINTEXT", "SASL_SSL")
        text = text.replace("listener.name.sasl_plaintext.", "listener.name.sasl_ssl.")
        return text + "\n".join(
            [
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={self.keystore}",
                # the broker talks to itself (transaction markers) through the same listener
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.ca}",
                "",
            ]
        )


@pytest.fixture(scope="module")
def tls_broker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of clients that reach the private SASL_SSL broker with the CA setting."""
    base = tmp_path_factory.mktemp("tls")
    certificates = base / "certs"
    certificates.mkdir()
    ca, keystore = make_certificates(certificates)
    state = base / "state"
    private = private_settings(state)
    state.mkdir(parents=True)
    (state / "jars").symlink_to(settings.path("jars").resolve())
    kafka = private.kafka.model_copy(
        update={"security_protocol": "SASL_SSL", "sasl_mechanism": MECHANISM, "ssl_ca_location": str(ca)}
    )
    secured = private.model_copy(update={"kafka": kafka})
    service = TlsScramKafka(secured)
    service.ca, service.keystore = ca, keystore
    service.install()
    service.start()
    try:
        wait_ready(service)
        yield secured
    finally:
        service.stop()


def without_ca(settings: Settings) -> Settings:
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"ssl_ca_location": ""})})


def test_clients_with_the_ca_setting_produce_and_consume(tls_broker: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with_credentials(monkeypatch, CLIENT_USER, CLIENT_PASSWORD)
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(tls_broker, [topic], partitions=1) == [topic]
    producer = make_producer(tls_broker)
    for n in range(20):
        producer.send(topic, encode_json({"n": n}), key=b"k")
    producer.flush()
    producer.close()
    assert [json.loads(r.value)["n"] for r in read_topic(tls_broker, topic)] == list(range(20))
    # what the Flink connector gets: the same CA, as a PEM truststore
    properties = flink_security_properties(tls_broker)
    assert properties["security.protocol"] == "SASL_SSL"
    assert properties["ssl.truststore.type"] == "PEM"
    assert properties["ssl.truststore.location"] == tls_broker.kafka.ssl_ca_location


def test_without_the_ca_clients_fail_fast_in_one_line(tls_broker: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with_credentials(monkeypatch, CLIENT_USER, CLIENT_PASSWORD)
    for make in (lambda: make_admin(without_ca(tls_broker)), lambda: make_producer(without_ca(tls_broker))):
        started = time.monotonic()
        with pytest.raises(StackError) as caught:
            make()
        assert time.monotonic() - started < 30
        message = str(caught.value)
        assert "\n" not in message
        assert "SASL_SSL" in message and "ssl_ca_location" in message, message
    # a CA file that is not there: refused before any connection
    missing = tls_broker.model_copy(
        update={"kafka": tls_broker.kafka.model_copy(update={"ssl_ca_location": "/nonexistent/ca.pem"})}
    )
    with pytest.raises(ConfigError, match=r"kafka.ssl_ca_location=/nonexistent/ca.pem is not a readable file"):
        make_admin(missing)
    with pytest.raises(ConfigError, match="ssl_ca_location"):
        flink_security_properties(missing)


def test_the_cli_without_the_ca_prints_one_line(tls_broker: Settings, tmp_path: Path) -> None:
    from pricewave.stack.process import child_environment

    env = {key: value for key, value in child_environment().items() if not key.startswith("PRICEWAVE_KAFKA")}
    env.update(
        {
            "PRICEWAVE_STATE_DIR": str(tmp_path),
            "PRICEWAVE_KAFKA__PORT": str(tls_broker.kafka.port),
            "PRICEWAVE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "PRICEWAVE_KAFKA__SASL_MECHANISM": MECHANISM,
            "PRICEWAVE_KAFKA_USERNAME": CLIENT_USER,
            "PRICEWAVE_KAFKA_PASSWORD": CLIENT_PASSWORD,
        }
    )
    command = [sys.executable, "-m", "pricewave", "topics", "create"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode != 0, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PRICEWAVE_KAFKA__SSL_CA_LOCATION" in lines[0], result.stderr
    # the same command with the CA setting works
    env["PRICEWAVE_KAFKA__SSL_CA_LOCATION"] = tls_broker.kafka.ssl_ca_location
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # a bounded MiniCluster run: 3.5-5.5 min on the shared 2-core machine
def test_pricing_job_reads_and_writes_through_the_tls_listener(
    tls_broker: Settings, applied_feature_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Flink job's Kafka tables (sources, dead letters, exactly-once prices) over SASL_SSL."""
    with_credentials(monkeypatch, CLIENT_USER, CLIENT_PASSWORD)
    the_job_prices_through(tls_broker, applied_feature_repo, tmp_path, events=600)


def test_ssl_without_sasl_configures_tls_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``security_protocol=SSL``: the CA for every client, no SASL settings (no credentials needed)."""
    from pricewave.config import load_settings
    from pricewave.kafka_io import security_config

    with_credentials(monkeypatch, None, None)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"PRICEWAVE_KAFKA__SECURITY_PROTOCOL": "SSL", "PRICEWAVE_KAFKA__SSL_CA_LOCATION": str(ca)}
    settings = load_settings(env={**env, "PRICEWAVE_STATE_DIR": str(tmp_path)})
    assert security_config(settings) == {"security_protocol": "SSL", "ssl_check_hostname": True, "ssl_cafile": str(ca)}
    assert flink_security_properties(settings) == {
        "security.protocol": "SSL",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca),
    }
    # PLAINTEXT ignores the CA setting
    plain = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"security_protocol": "PLAINTEXT"})})
    assert security_config(plain) == {} and flink_security_properties(plain) == {}
