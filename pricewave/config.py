"""The one configuration model every part of pricewave reads.

Settings come from three layers, later ones winning:

1. the defaults below (a laptop stack on loopback),
2. a YAML file (``--config FILE`` or ``PRICEWAVE_CONFIG``),
3. environment variables ``PRICEWAVE_<SECTION>__<FIELD>``, e.g.
   ``PRICEWAVE_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` (and ``PRICEWAVE_HOLIDAYS``, a YAML list).

Secrets (Redis password, Kafka SASL credentials, the user-key HMAC secret) are read from the
environment only and are never written to a file.

Example:
    >>> from pricewave.config import load_settings
    >>> settings = load_settings(env={"PRICEWAVE_KAFKA__PORT": "19092"})
    >>> settings.kafka.bootstrap_servers
    'localhost:19092'
    >>> settings.topics.clicks
    'clicks'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pricewave.errors import ConfigError

ENV_PREFIX = "PRICEWAVE_"
CONFIG_PATH_ENV = "PRICEWAVE_CONFIG"
REDIS_PASSWORD_ENV = "PRICEWAVE_REDIS_PASSWORD"
USER_KEY_SECRET_ENV = "PRICEWAVE_USER_KEY_SECRET"
KAFKA_USERNAME_ENV = "PRICEWAVE_KAFKA_USERNAME"
KAFKA_PASSWORD_ENV = "PRICEWAVE_KAFKA_PASSWORD"
SECRET_ENVS = (REDIS_PASSWORD_ENV, USER_KEY_SECRET_ENV, KAFKA_USERNAME_ENV, KAFKA_PASSWORD_ENV)
"""The secrets, read from the environment only."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KafkaSettings(_Section):
    """The broker: where clients connect and how the local broker is laid out."""

    host: str = "localhost"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    version: str = "4.1.1"
    # Above Flink's KafkaSink transaction timeout (checkpoint timeout + restart delay), so an
    # exactly-once sink can start; a stock broker allows only 15 minutes.
    transaction_max_timeout_ms: int = Field(3_600_000, ge=60_000)
    # How clients authenticate. SASL needs a mechanism and credentials, which come from
    # PRICEWAVE_KAFKA_USERNAME / PRICEWAVE_KAFKA_PASSWORD only (never from a file).
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] | None = None
    # TLS (SSL, SASL_SSL): a PEM file of the CA certificate(s) that signed the broker's certificate,
    # for a private CA; empty means the system's trusted CAs. Every Python client and the Flink
    # job's Kafka connector (as a PEM truststore) use it.
    ssl_ca_location: str = ""
    # The brokers clients connect to, as a comma-separated host:port list (a shop's cluster, so one
    # broker down does not stop a client from finding the rest). Empty: host:port, the local broker.
    bootstrap: str = ""

    @field_validator("bootstrap")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        brokers = [broker.strip() for broker in value.split(",") if broker.strip()]
        for broker in brokers:
            host, _, port = broker.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{broker!r} is not host:port (kafka.bootstrap is a comma-separated host:port list)")
        return ",".join(brokers)

    @property
    def bootstrap_servers(self) -> str:
        """The comma-separated ``host:port`` list for Kafka clients: ``bootstrap``, else ``host:port``.

        Example:
            >>> KafkaSettings(bootstrap="k1:9092, k2:9092").bootstrap_servers
            'k1:9092,k2:9092'
            >>> KafkaSettings().bootstrap_servers
            'localhost:9092'
        """
        return self.bootstrap or f"{self.host}:{self.port}"

    @property
    def uses_sasl(self) -> bool:
        """True when clients must authenticate with SASL."""
        return self.security_protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        """True when the connection to the broker is encrypted (``SSL`` or ``SASL_SSL``)."""
        return self.security_protocol.endswith("SSL")

    @property
    def username(self) -> str | None:
        """The SASL user, from ``PRICEWAVE_KAFKA_USERNAME`` only."""
        return os.environ.get(KAFKA_USERNAME_ENV) or None

    @property
    def password(self) -> str | None:
        """The SASL password, from ``PRICEWAVE_KAFKA_PASSWORD`` only."""
        return os.environ.get(KAFKA_PASSWORD_ENV) or None


class TopicSettings(_Section):
    """The one place that knows topic names and their partition counts."""

    # The settings field of each topic: the ones the shop produces into, then pricewave's outputs.
    INPUT_ROLES: ClassVar[tuple[str, ...]] = ("clicks", "competitor_prices", "reviews")
    ROLES: ClassVar[tuple[str, ...]] = (*INPUT_ROLES, "prices", "dlq")

    clicks: str = "clicks"
    competitor_prices: str = "competitor-prices"
    reviews: str = "reviews"
    prices: str = "prices"
    dlq: str = "dlq"
    partitions: int = Field(2, ge=1, le=1024)
    # Copies of each partition a new topic gets: 1 on the local single broker; 3 is usual on a
    # shop's cluster (at most its number of brokers).
    replication_factor: int = Field(1, ge=1, le=32)
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=60_000)
    # The dead-letter topic keeps records as a producer sent them (raw user ids pseudonymized, but
    # free text can still name a person): 3 days, enough to inspect and replay over a weekend.
    dlq_retention_ms: int = Field(3 * 24 * 3600 * 1000, ge=60_000)

    def retention_ms_of(self, name: str) -> int:
        """The ``retention.ms`` a new topic of this name gets (the dead-letter topic its own)."""
        return self.dlq_retention_ms if name == self.dlq else self.retention_ms

    def all_names(self) -> list[str]:
        """Every topic pricewave reads or writes, in a stable order."""
        return [getattr(self, role) for role in self.ROLES]

    def input_names(self) -> list[str]:
        """The topics the shop (or the simulator) produces into."""
        return [getattr(self, role) for role in self.INPUT_ROLES]


class RedisSettings(_Section):
    """The Redis server behind the Feast online store's Redis profile."""

    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    # Connect and read timeout of every online-store call (redis-py has none by default: a hung
    # server blocked a worker for minutes). Added to the Feast profile's connection string.
    timeout_s: float = Field(2.0, gt=0, le=300)

    @property
    def password(self) -> str | None:
        """The password, from ``PRICEWAVE_REDIS_PASSWORD`` only (never from a file)."""
        return os.environ.get(REDIS_PASSWORD_ENV) or None


class FlinkSettings(_Section):
    """The standalone Flink cluster used for ``flink run`` submission."""

    rest_host: str = "localhost"
    rest_port: int = Field(8081, ge=1, le=65535)
    rpc_port: int = Field(6123, ge=1, le=65535)
    taskmanagers: int = Field(2, ge=1, le=16)
    slots_per_taskmanager: int = Field(2, ge=1, le=64)
    taskmanager_memory: str = "2112m"
    taskmanager_metaspace: str = "768m"
    jobmanager_memory: str = "1024m"

    @property
    def rest_url(self) -> str:
        """Base URL of the JobManager's REST API and Web UI."""
        return f"http://{self.rest_host}:{self.rest_port}"


class ModelSettings(_Section):
    """Where models live. ``embedding_path`` empty means the packaged all-MiniLM-L6-v2."""

    model_dir: str = "models"
    embedding_path: str = ""
    # A model older than this trips the kill switch (base prices): above a realistic retraining
    # cadence (weekly), so a model trained last night still prices; `pricewave train` refreshes it.
    max_age_h: float = Field(168.0, gt=0)

    @property
    def max_age_s(self) -> float:
        """``max_age_h`` in seconds (what :class:`pricewave.pricing.guardrails.GuardrailPolicy` takes)."""
        return self.max_age_h * 3600.0


class StackSettings(_Section):
    """Which local services ``pricewave stack up`` starts."""

    start_timeout_s: float = Field(120.0, gt=0)
    # The address every local service listens on (Kafka's broker listener, Redis, Flink's REST API,
    # RPC and data ports): loopback unless set, e.g. to 0.0.0.0 for other hosts.
    bind_host: str = "127.0.0.1"
    # Flink's Prometheus reporter (ports 9250-9260). Off unless set: Flink binds it to every
    # interface and has no option to choose one.
    flink_prometheus: bool = False


class HolidayPeriod(_Section):
    """One holiday of the calendar the model's ``is_holiday`` input reads: from ``start`` until ``end``.

    ``start`` and ``end`` are ISO 8601 dates or times (naive means UTC); ``end`` is excluded, so a
    one-day holiday is ``start: 2026-11-27``, ``end: 2026-11-28``.
    """

    name: str = ""
    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _ends_after_start(self) -> HolidayPeriod:
        if self.end <= self.start:
            raise ValueError(f"holiday {self.name!r} must end after it starts")
        return self

    @property
    def start_ms(self) -> int:
        """The first epoch millisecond of the holiday."""
        return _first_millisecond_from(self.start)

    @property
    def end_ms(self) -> int:
        """The first epoch millisecond after the holiday."""
        return _first_millisecond_from(self.end)


def _first_millisecond_from(moment: datetime) -> int:
    """The first whole epoch millisecond at or after ``moment`` (exact: integer microseconds)."""
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return -(-micros // 1000)


DEV_USER_KEY_SECRET = "pricewave-dev-key-change-me"
"""The development HMAC key: public, so user keys made with it can be reversed by enumeration."""
MIN_USER_KEY_SECRET_BYTES = 32


class Settings(_Section):
    """All of pricewave's settings."""

    # "dev": a laptop or CI stack, where an unset user-key secret falls back to a public development
    # key. "production": every command refuses to start without a secret of at least 32 bytes.
    environment: Literal["dev", "production"] = "dev"
    state_dir: Path = Field(Path(".pricewave"), validate_default=True)
    # The Feast feature repo; empty means the repository's own feature_repo/.
    feature_repo: str = ""
    # The online store profile: "sqlite", "redis" or a feature_store yaml (relative to the repo or
    # absolute); empty means Feast's own $FEAST_FS_YAML_FILE_PATH, else "sqlite". The job resolves it
    # once and hands it to every Python worker (pricewave.feature_store.store.pinned_settings).
    store_profile: str = ""
    # How often a pricer re-reads a sku's catalog row from the online store (seconds); between reads,
    # and while the store is unreachable, it prices from its per-worker copy.
    catalog_refresh_s: float = Field(30.0, ge=0, le=86_400)
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    redis: RedisSettings = RedisSettings()
    flink: FlinkSettings = FlinkSettings()
    models: ModelSettings = ModelSettings()
    stack: StackSettings = StackSettings()
    # The shop's holiday calendar: the model's is_holiday input, the same for the job (which travels
    # with it, PRICEWAVE_HOLIDAYS) and for training on a history without a scenario (a simulated
    # history brings its scenario's own calendar). In YAML a list of {name, start, end}.
    holidays: list[HolidayPeriod] = Field(default_factory=list)

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def user_key_secret(self) -> bytes:
        """The HMAC key that pseudonymizes user ids (``PRICEWAVE_USER_KEY_SECRET``).

        In the ``dev`` environment a fixed, public development key is used when the variable is
        unset, so the local stack works out of the box. An empty key is never accepted, and in
        ``production`` the key must be set and at least 32 bytes long (:func:`check_user_key_secret`).

        Raises:
            ConfigError: The key is empty, or missing or short outside ``dev``.
        """
        return check_user_key_secret(self.environment, os.environ.get(USER_KEY_SECRET_ENV))

    def path(self, *parts: str) -> Path:
        """A path under the state directory (logs, data, pids, jars)."""
        return self.state_dir.joinpath(*parts)

    @property
    def model_dir(self) -> Path:
        """Where demand-model artifacts live: ``models.model_dir`` under the state directory, or as
        given when absolute."""
        return self.path(str(Path(self.models.model_dir).expanduser()))


def check_user_key_secret(environment: str, value: str | None) -> bytes:
    """The user-key secret to use, or a one-line ConfigError saying what to set.

    Example:
        >>> check_user_key_secret("dev", None) == DEV_USER_KEY_SECRET.encode()
        True
        >>> check_user_key_secret("production", "x" * 32)[:3]
        b'xxx'
    """
    hint = (
        f"set {USER_KEY_SECRET_ENV} to a random key of at least {MIN_USER_KEY_SECRET_BYTES} bytes "
        "(openssl rand -hex 32)"
    )
    if value is None:
        if environment == "dev":
            return DEV_USER_KEY_SECRET.encode()
        raise ConfigError(f"{USER_KEY_SECRET_ENV} is not set and environment is {environment}: {hint}")
    if not value:
        raise ConfigError(f"{USER_KEY_SECRET_ENV} is empty: {hint}, or unset it in a dev environment")
    if environment != "dev" and len(value.encode()) < MIN_USER_KEY_SECRET_BYTES:
        raise ConfigError(
            f"{USER_KEY_SECRET_ENV} is {len(value.encode())} bytes, too short to keep user keys private: {hint}"
        )
    return value.encode()


SECRET_MASK = "******"
# Where secrets sit in text pricewave prints or logs, whatever their value: a JAAS config's
# username="..." password="...", a connection string's password=..., a URL's user:password@,
# redis.conf's requirepass, and NAME=value of the secret variables.
_SECRET_SHAPES = (
    re.compile(r'(?i)(\b(?:password|username|passwd|pwd)\s*[=:]\s*|\brequirepass\s+)("(?:[^"\\]|\\.)*"|[^\s,;"&]+)'),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)(@)"),
    re.compile(r"(\b(?:" + "|".join(SECRET_ENVS) + r")=)(\S+)"),
)
_MIN_MASKED_VALUE = 3  # a shorter secret value is not searched for (it would mask ordinary words)


def mask_secrets(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret replaced by ``******``, for anything printed or logged.

    Masks the values of the secret variables (``SECRET_ENVS``) that are set, wherever they
    appear, and secrets by their shape whatever their value (see ``_SECRET_SHAPES``): a command
    line, a config echo or an error message that holds a Redis URL or a SASL JAAS config.

    Example:
        >>> mask_secrets('redis://:hunter22@r:6379/0 sasl.jaas.config=... username="u" password="p;w";', env={})
        'redis://:******@r:6379/0 sasl.jaas.config=... username="******" password="******";'
        >>> mask_secrets("127.0.0.1:6379,password=s3cret,ssl=true", env={})
        '127.0.0.1:6379,password=******,ssl=true'
        >>> mask_secrets("key is xyzzy-42", env={"PRICEWAVE_USER_KEY_SECRET": "xyzzy-42"})
        'key is ******'
    """
    env = os.environ if env is None else env
    values = sorted(
        {value for name in SECRET_ENVS if len(value := env.get(name, "")) >= _MIN_MASKED_VALUE}, key=len, reverse=True
    )
    for value in values:
        text = text.replace(value, SECRET_MASK)
    for shape in _SECRET_SHAPES:
        text = shape.sub(_mask_match, text)
    return text


def _mask_match(match: re.Match[str]) -> str:
    """The match with its secret (group 2) masked, quoted when the secret was."""
    masked = f'"{SECRET_MASK}"' if match.group(2).startswith('"') else SECRET_MASK
    return match.group(1) + masked + (match.group(3) if match.re.groups > 2 else "")


def secret_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The secrets that are set (``SECRET_ENVS``), for a process that must see what this one sees.

    The job hands them to its Python workers with the UDFs: a TaskManager does not inherit the
    environment of the shell that submitted the job.
    """
    env = os.environ if env is None else env
    return {name: env[name] for name in SECRET_ENVS if name in env}


def _deep_merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


HOLIDAYS_ENV = "PRICEWAVE_HOLIDAYS"


def holidays_variable(settings: Settings) -> str:
    """The ``PRICEWAVE_HOLIDAYS`` value that gives another process this holiday calendar (JSON, which YAML reads).

    Example:
        >>> settings = load_settings(env={HOLIDAYS_ENV: "[{name: sale, start: 2026-11-27, end: 2026-11-28}]"})
        >>> holidays_variable(settings)
        '[{"name": "sale", "start": "2026-11-27T00:00:00Z", "end": "2026-11-28T00:00:00Z"}]'
        >>> load_settings(env={HOLIDAYS_ENV: holidays_variable(settings)}).holidays == settings.holidays
        True
    """
    return json.dumps(settings.model_dump(mode="json")["holidays"])


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``PRICEWAVE_SECTION__FIELD=value`` variables into a nested dict."""
    overrides: dict[str, Any] = {}
    skip = {CONFIG_PATH_ENV, *SECRET_ENVS}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in skip:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if name == HOLIDAYS_ENV:  # a YAML (or JSON) list
            overrides["holidays"] = yaml.safe_load(value)
        elif path in (["state_dir"], ["feature_repo"], ["store_profile"], ["environment"]) or len(path) == 2:
            node = overrides
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
    return overrides


def _read_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(loaded).__name__}")
    return loaded


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    return f"invalid setting {where} in {source}: {first['msg']}"


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from defaults, an optional YAML file and the environment.

    Args:
        path: A YAML config file. Defaults to ``$PRICEWAVE_CONFIG`` when set.
        env: The environment to read overrides from. Defaults to ``os.environ``.

    Returns:
        The validated settings.

    Raises:
        ConfigError: The file is missing or malformed, or a value is invalid. The message is
            one line naming the setting and what is wrong.
    """
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_PATH_ENV)
    data: dict[str, Any] = {}
    source = "defaults"
    if path:
        data = _read_file(Path(path))
        source = str(path)
    overrides = _env_overrides(env)
    if overrides:
        source = f"{source} + PRICEWAVE_* environment"
    try:
        settings = Settings.model_validate(_deep_merge(data, overrides))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    # Refuse to start, rather than on the first pseudonymized user: outside dev a missing or
    # short secret would make user keys reversible by enumeration.
    check_user_key_secret(settings.environment, env.get(USER_KEY_SECRET_ENV))
    return settings
