"""The pricing job's checkpoint and decision-log knobs: tolerated failures, own directories, rolling."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricewave.config import Settings
from pricewave.errors import ConfigError
from pricewave.job import JobOptions, parse_args
from pricewave.job.sinks import decision_log_ddl


def test_defaults_tolerate_failed_checkpoints_within_the_transaction_timeout() -> None:
    options = JobOptions()
    options.validate()
    assert options.tolerable_failed_checkpoints > 0
    # Every price waiting in a pending transaction commits before the broker would abort it.
    assert options.checkpoint_interval_s * (options.tolerable_failed_checkpoints + 1) < options.transaction_timeout_s


def test_tolerating_failures_past_the_transaction_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match="must stay below the transaction timeout 20 s"):
        JobOptions(checkpoint_interval_s=2, transaction_timeout_s=20, tolerable_failed_checkpoints=10).validate()
    JobOptions(checkpoint_interval_s=2, transaction_timeout_s=20, tolerable_failed_checkpoints=5).validate()
    with pytest.raises(ConfigError, match="tolerable-failed-checkpoints must be >= 0"):
        JobOptions(tolerable_failed_checkpoints=-1).validate()
    with pytest.raises(ConfigError, match="rollover > 0"):
        JobOptions(decision_log_rollover_s=0).validate()


def test_the_decision_log_rolls_by_size_and_age_in_its_own_directory(settings: Settings, tmp_path: Path) -> None:
    ddl = decision_log_ddl(
        settings, JobOptions(decision_log_dir=str(tmp_path / "log"), decision_log_file_mb=8, decision_log_rollover_s=4)
    )
    assert f"'path' = '{(tmp_path / 'log').as_uri()}'" in ddl
    assert "'sink.rolling-policy.file-size' = '8MB'" in ddl
    assert "'sink.rolling-policy.rollover-interval' = '4000 ms'" in ddl
    assert "'sink.rolling-policy.check-interval' = '4000 ms'" in ddl
    default = decision_log_ddl(settings, JobOptions())
    assert "'sink.rolling-policy.rollover-interval' = '60000 ms'" in default


def test_command_line_flags_reach_the_options(tmp_path: Path) -> None:
    _, options, _, _ = parse_args(
        ["--checkpoint-dir", str(tmp_path / "ckpt"), "--tolerable-failed-checkpoints", "7", "--decision-log-dir", "x"]
    )
    assert (options.checkpoint_dir, options.tolerable_failed_checkpoints, options.decision_log_dir) == (
        str(tmp_path / "ckpt"),
        7,
        "x",
    )


def test_latency_knobs_come_from_flags_and_impossible_values_are_refused() -> None:
    defaults = JobOptions()
    # Shorter than Flink's own defaults (200 ms, 100 ms): a price waits on both at every exchange.
    assert defaults.watermark_interval_ms < 200 and defaults.buffer_timeout_ms < 100
    _, options, _, _ = parse_args(["--watermark-interval", "25", "--buffer-timeout", "0"])
    assert (options.watermark_interval_ms, options.buffer_timeout_ms) == (25, 0)
    with pytest.raises(ConfigError, match="--watermark-interval must be > 0 ms"):
        JobOptions(watermark_interval_ms=0).validate()
    with pytest.raises(ConfigError, match="--buffer-timeout >= 0 ms"):
        JobOptions(buffer_timeout_ms=-1).validate()


@pytest.mark.integration
@pytest.mark.isolated
def test_the_table_environment_carries_the_latency_knobs(settings: Settings) -> None:
    """What the options set is what the job's (JVM) configuration holds."""
    from pricewave.job import create_table_environment

    t_env = create_table_environment(settings, JobOptions(watermark_interval_ms=40, buffer_timeout_ms=7))
    config = t_env.get_config()
    assert config.get("pipeline.auto-watermark-interval", "") == "40 ms"
    assert config.get("execution.buffer-timeout.interval", "") == "7 ms"
