"""The one settings loader: defaults, YAML file, environment overrides, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pricewave.config import load_settings
from pricewave.errors import ConfigError


def test_defaults_are_the_local_stack() -> None:
    settings = load_settings(env={})
    assert settings.kafka.bootstrap_servers == "localhost:9092"
    assert settings.flink.rest_url == "http://localhost:8081"
    assert (settings.redis.host, settings.redis.port) == ("127.0.0.1", 6379)
    assert settings.topics.all_names() == ["clicks", "competitor-prices", "reviews", "prices", "dlq"]
    assert settings.state_dir.is_absolute()


def test_file_then_environment_override(tmp_path: Path) -> None:
    config = tmp_path / "pricewave.yaml"
    config.write_text("kafka:\n  port: 19092\ntopics:\n  clicks: shop-clicks\n  partitions: 4\n")
    settings = load_settings(config, env={"PRICEWAVE_KAFKA__PORT": "29092", "PRICEWAVE_STATE_DIR": str(tmp_path)})
    assert settings.kafka.bootstrap_servers == "localhost:29092"  # environment wins over the file
    assert settings.topics.clicks == "shop-clicks"
    assert settings.topics.partitions == 4
    assert settings.state_dir == tmp_path.resolve()


def test_a_broker_list_is_what_clients_connect_to() -> None:
    settings = load_settings(
        env={
            "PRICEWAVE_KAFKA__BOOTSTRAP": " kafka-0.shop:9092, kafka-1.shop:9092 ",
            "PRICEWAVE_TOPICS__REPLICATION_FACTOR": "3",
        }
    )
    assert settings.kafka.bootstrap_servers == "kafka-0.shop:9092,kafka-1.shop:9092"
    assert settings.topics.replication_factor == 3


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("flink:\n  taskmanagers: 3\n")
    assert load_settings(env={"PRICEWAVE_CONFIG": str(config)}).flink.taskmanagers == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kafka: [1, 2", "not valid YAML"),
        ("- a\n- b\n", "must hold a mapping"),
        ("kafka:\n  port: 99999\n", "invalid setting kafka.port"),
        ("kafka:\n  prot: 1\n", "invalid setting kafka.prot"),
        ("flink:\n  taskmanagers: zero\n", "invalid setting flink.taskmanagers"),
        ("kafka:\n  bootstrap: k1:9092,k2\n", "invalid setting kafka.bootstrap"),
        ("topics:\n  replication_factor: 0\n", "invalid setting topics.replication_factor"),
    ],
)
def test_bad_file_is_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(config, env={})
    assert "\n" not in str(caught.value)


def test_bad_environment_value_names_the_variable_source() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.port .*PRICEWAVE_\* environment"):
        load_settings(env={"PRICEWAVE_KAFKA__PORT": "not-a-port"})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings("/nonexistent/pricewave.yaml", env={})


def test_secrets_come_from_environment_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("redis:\n  password: hunter2\n")
    with pytest.raises(ConfigError, match=r"redis\.password"):
        load_settings(config, env={})
    monkeypatch.setenv("PRICEWAVE_REDIS_PASSWORD", "s3cret")
    assert load_settings(env={}).redis.password == "s3cret"


def test_cli_bad_config_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("kafka:\n  port: -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "pricewave", "--config", str(config), "stack", "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "invalid setting kafka.port" in result.stderr


def test_cli_bad_argument_exits_nonzero_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pricewave", "stack", "sideways"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PRICEWAVE_ENVIRONMENT": "production"}, "is not set and environment is production"),
        ({"PRICEWAVE_ENVIRONMENT": "production", "PRICEWAVE_USER_KEY_SECRET": "x" * 31}, "31 bytes, too short"),
        ({"PRICEWAVE_USER_KEY_SECRET": ""}, "is empty"),
    ],
    ids=["production-unset", "production-short", "empty-anywhere"],
)
def test_a_reversible_user_key_secret_refuses_to_start(env: dict[str, str], message: str) -> None:
    """The public dev key (or a short one) lets anyone reverse user keys by enumeration."""
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_dev_falls_back_to_the_development_key_and_production_takes_a_long_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PRICEWAVE_USER_KEY_SECRET", raising=False)
    assert load_settings(env={}).user_key_secret == b"pricewave-dev-key-change-me"
    secret = "k" * 32
    monkeypatch.setenv("PRICEWAVE_USER_KEY_SECRET", secret)
    production = load_settings(env={"PRICEWAVE_ENVIRONMENT": "production", "PRICEWAVE_USER_KEY_SECRET": secret})
    assert production.environment == "production" and production.user_key_secret == secret.encode()


def test_the_cli_refuses_to_start_in_production_without_a_secret() -> None:
    env = {"PATH": "/usr/bin:/bin", "PRICEWAVE_ENVIRONMENT": "production"}
    done = subprocess.run(
        [sys.executable, "-m", "pricewave", "topics", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "PRICEWAVE_USER_KEY_SECRET" in done.stderr, done.stderr


def test_the_holiday_calendar_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "pricewave.yaml"
    config.write_text("holidays:\n  - {name: black friday, start: 2026-11-27, end: 2026-11-28}\n")
    (friday,) = load_settings(config, env={}).holidays
    assert (friday.name, friday.start_ms, friday.end_ms) == ("black friday", 1_795_737_600_000, 1_795_824_000_000)
    sale = '[{"name": "sale", "start": "2026-12-01T06:30:00+01:00", "end": "2026-12-01T18:00:00.0005"}]'
    (moved,) = load_settings(config, env={"PRICEWAVE_HOLIDAYS": sale}).holidays  # the environment wins
    assert moved.start_ms == 1_796_103_000_000  # 05:30 UTC
    assert moved.end_ms == 1_796_148_000_001  # naive is UTC; the first whole millisecond after the end
    assert load_settings(env={}).holidays == []


def test_a_holiday_must_end_after_it_starts() -> None:
    message = r"^invalid setting holidays\.0 in defaults \+ PRICEWAVE_\* environment: .*must end after it starts"
    with pytest.raises(ConfigError, match=message):
        load_settings(env={"PRICEWAVE_HOLIDAYS": "[{name: x, start: 2026-11-28, end: 2026-11-27}]"})
