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
