"""No secret in anything pricewave prints or logs: command lines, config echoes, error messages.

Every printing path below runs with known secrets set (``SECRET_ENVS``) and its output is checked
for each of them; the paths share one helper, :func:`pricewave.config.mask_secrets`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pricewave import cli
from pricewave.config import (
    KAFKA_PASSWORD_ENV,
    KAFKA_USERNAME_ENV,
    REDIS_PASSWORD_ENV,
    SECRET_MASK,
    USER_KEY_SECRET_ENV,
    Settings,
    mask_secrets,
)
from pricewave.kafka_io import flink_security_properties

SECRETS = {
    KAFKA_USERNAME_ENV: "kuser-Zq81x",
    KAFKA_PASSWORD_ENV: 'kpw-"Hh2k9;=',  # quotes, = and ; as a JAAS config must escape them
    REDIS_PASSWORD_ENV: "rpw-M3t7v@x",
    USER_KEY_SECRET_ENV: "uks-" + "a1b2c3d4" * 5,
}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    monkeypatch.setenv("PRICEWAVE_STATE_DIR", str(tmp_path / "state"))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


# A part of each secret that survives any quoting or escaping.
CORES = {
    KAFKA_USERNAME_ENV: "Zq81x",
    KAFKA_PASSWORD_ENV: "Hh2k9",
    REDIS_PASSWORD_ENV: "M3t7v",
    USER_KEY_SECRET_ENV: "a1b2c3d4",
}


def assert_no_secret(text: str, where: str) -> None:
    leaked = [name for name, core in CORES.items() if core in text]
    assert not leaked, f"{where} shows {leaked}: {text!r}"


def sasl_settings() -> Settings:
    return Settings.model_validate({"kafka": {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}})


def test_the_helper_masks_values_and_shapes(secrets: dict[str, str]) -> None:
    jaas = flink_security_properties(sasl_settings())["sasl.jaas.config"]
    assert secrets[KAFKA_USERNAME_ENV] in jaas  # what is at stake: the JAAS config holds both
    masked = mask_secrets(f"'properties.sasl.jaas.config' = '{jaas}'")
    assert_no_secret(masked, "a JAAS config")
    assert masked.count(SECRET_MASK) >= 2 and "PlainLoginModule required" in masked
    # By shape, whatever the value (one not in this environment, e.g. from a file).
    for text in (
        "redis://:other-pass-1@redis:6379/0",
        "redis://default:other-pass-1@redis:6379/0",
        "redis:6379,password=other-pass-1,ssl=true",
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="other-pass-1";',
        'requirepass "other-pass-1"',
        "PRICEWAVE_KAFKA_PASSWORD=other-pass-1 flink run",
    ):
        assert "other-pass-1" not in mask_secrets(text), text
    # Ordinary text is left alone.
    message = "Redis at 127.0.0.1:6379 requires a password (AUTH failed): set PRICEWAVE_REDIS_PASSWORD"
    assert mask_secrets(message) == message


def test_printing_paths_show_no_secret(
    secrets: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs import pricing_job
    from pricewave.feature_store.degraded import one_line
    from pricewave.flink.submission import failure_summary
    from pricewave.stack.process import tail

    jaas = flink_security_properties(sasl_settings())["sasl.jaas.config"]
    # A CLI error that echoes what it was given (here a config path that holds a secret).
    bad_config = str(tmp_path / f"{secrets[REDIS_PASSWORD_ENV]}.yaml")
    assert cli.main(["--config", bad_config, "topics", "list"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and SECRET_MASK in err
    assert_no_secret(err, "pricewave's error line")
    # The same from the job's own entry point.
    assert pricing_job.main(["--config", bad_config]) == 2
    err = capsys.readouterr().err
    assert "pricing_job: error" in err
    assert_no_secret(err, "the pricing job's error line")
    # A process log quoted in a StackError (Kafka/Flink/Redis start-up, the job's log).
    log = tmp_path / "service.log"
    log.write_text(
        f"starting with sasl.jaas.config={jaas}\nredis://:{secrets[REDIS_PASSWORD_ENV]}@h:6379\n"
        f"{USER_KEY_SECRET_ENV}={secrets[USER_KEY_SECRET_ENV]}\n"
    )
    assert_no_secret(tail(log), "a quoted log tail")
    # flink run's output summarized in a JobError.
    output = f"Caused by: org.apache.flink.table.api.ValidationException: bad option sasl.jaas.config={jaas}"
    assert_no_secret(failure_summary(output), "flink run's failure summary")
    # An online-store failure as the degraded mode logs it.
    connection = f"127.0.0.1:6379,password={secrets[REDIS_PASSWORD_ENV]}"
    assert_no_secret(one_line(ValueError(f"could not connect with {connection}")), "a store outage line")


def test_submit_dry_run_masks_secrets_in_job_arguments(
    secrets: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed command hides the secret variables and any secret passed on as a job argument."""
    argument = f"redis://:{secrets[REDIS_PASSWORD_ENV]}@redis:6379/0"
    assert cli.main(["submit", "--dry-run", "--", "--group-id", "g1", "--note", argument]) == 0
    out = capsys.readouterr().out
    assert "--group-id g1" in out and "redis://:******@redis:6379/0" in out
    assert_no_secret(out, "submit --dry-run")


def test_no_secret_in_a_failing_cli_run_as_a_process(secrets: dict[str, str], tmp_path: Path) -> None:
    """The real console script: stdout and stderr of a failed command, secrets in the environment."""
    done = subprocess.run(
        [sys.executable, "-m", "pricewave", "--config", str(tmp_path / f"{secrets[KAFKA_PASSWORD_ENV]}.yaml"), "topics",
         "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert_no_secret(done.stdout + done.stderr, "pricewave topics list")
