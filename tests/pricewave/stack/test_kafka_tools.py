"""``pricewave kafka TOOL``: Kafka's own console tools from the stack's jars, against the real broker."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pricewave.config import Settings, load_settings
from pricewave.kafka_io import flink_security_properties
from pricewave.stack.kafka_tools import TOOLS, tool_command, write_client_properties

REPO = Path(__file__).resolve().parents[3]


def pricewave(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pricewave", "kafka", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
        check=False,
    )


@pytest.mark.integration
def test_topics_describes_a_topic_on_the_configured_broker(fresh_topic: str, kafka_stack: Settings) -> None:
    done = pricewave("topics", "--describe", "--topic", fresh_topic)
    assert done.returncode == 0, done.stderr
    assert f"Topic: {fresh_topic}" in done.stdout
    assert f"PartitionCount: {kafka_stack.topics.partitions}" in done.stdout
    assert "INFO" not in done.stdout  # the tool's logging stays off stdout


@pytest.mark.integration
def test_console_producer_and_consumer_round_trip(fresh_topic: str) -> None:
    lines = ["one", "two", "three"]
    produced = pricewave("console-producer", "--topic", fresh_topic, stdin="\n".join(lines) + "\n")
    assert produced.returncode == 0, produced.stderr
    consumed = pricewave(
        "console-consumer", "--topic", fresh_topic, "--from-beginning", "--max-messages", "3", "--timeout-ms", "60000"
    )
    assert consumed.returncode == 0, consumed.stderr
    assert sorted(consumed.stdout.split()) == sorted(lines)


@pytest.mark.integration
def test_the_tools_own_errors_come_through_with_its_exit_code(kafka_stack: Settings) -> None:
    done = pricewave("topics", "--describe", "--topic", "no-such-topic-here")
    assert done.returncode != 0
    assert "no-such-topic-here" in done.stdout + done.stderr


def test_an_unknown_tool_is_refused_with_the_choices() -> None:
    done = pricewave("kafka-topicz")
    assert done.returncode == 2
    assert "invalid choice: 'kafka-topicz'" in done.stderr and "console-consumer" in done.stderr


def test_the_bootstrap_servers_come_from_the_settings_unless_given() -> None:
    settings = load_settings(env={"PRICEWAVE_KAFKA__BOOTSTRAP": "k1:9092,k2:9092"})
    command = tool_command(settings, "consumer-groups", ["--list"], classpath="jars/*")
    assert command[command.index("--bootstrap-server") + 1] == "k1:9092,k2:9092"
    given = tool_command(settings, "topics", ["--bootstrap-server", "other:9092", "--list"], classpath="jars/*")
    assert given.count("--bootstrap-server") == 1 and "k1:9092,k2:9092" not in given


def test_sasl_credentials_go_to_a_private_file_never_to_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRICEWAVE_KAFKA_USERNAME", "pricing")  # credentials come from the environment only
    monkeypatch.setenv("PRICEWAVE_KAFKA_PASSWORD", "s3cret-pass")
    env = {"PRICEWAVE_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PRICEWAVE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256"}
    settings = load_settings(env=env)
    properties = write_client_properties(tmp_path / "client.properties", flink_security_properties(settings))
    assert stat.S_IMODE(properties.stat().st_mode) == 0o600
    text = properties.read_text()
    assert "security.protocol=SASL_PLAINTEXT" in text and 'password="s3cret-pass"' in text
    for tool, spec in TOOLS.items():
        command = tool_command(settings, tool, [], classpath="jars/*", config_file=properties)
        assert command[command.index(spec.config_option) + 1] == str(properties)
        assert not any("s3cret" in part for part in command), tool
