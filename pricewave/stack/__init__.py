"""The local stack: a real Kafka broker, Redis and a standalone Flink cluster on loopback.

``up`` installs what is missing, starts what is not running and waits until each part answers;
``down`` stops only the processes ``up`` started (by pid file); ``status`` reports each part.
Logs, data and pid files live under ``settings.state_dir``.

Example:
    >>> from pricewave.config import load_settings
    >>> [service.name for service in services(load_settings(env={}))]
    ['kafka', 'redis', 'flink']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pricewave.config import Settings
from pricewave.errors import ConfigError
from pricewave.stack.base import Service, ServiceStatus
from pricewave.stack.flink import FlinkService
from pricewave.stack.kafka import KafkaService
from pricewave.stack.redis import RedisService

SERVICE_NAMES = ("kafka", "redis", "flink")

__all__ = ["SERVICE_NAMES", "Service", "ServiceStatus", "down", "services", "status", "up"]


def services(settings: Settings, names: Iterable[str] | None = None) -> list[Service]:
    """The services named (default: all), in start order."""
    wanted = list(names) if names is not None else list(SERVICE_NAMES)
    unknown = [name for name in wanted if name not in SERVICE_NAMES]
    if unknown:
        raise ConfigError(f"unknown stack service {', '.join(unknown)}: choose from {', '.join(SERVICE_NAMES)}")
    classes: dict[str, Callable[[Settings], Service]] = {
        "kafka": KafkaService,
        "redis": RedisService,
        "flink": FlinkService,
    }
    return [classes[name](settings) for name in SERVICE_NAMES if name in wanted]


def up(settings: Settings, names: Iterable[str] | None = None) -> list[ServiceStatus]:
    """Install, start and health-check the services; idempotent.

    A service that already answers on its address without our pid file (started by someone
    else) is used as it is and not started twice.
    """
    chosen = services(settings, names)
    for service in chosen:
        service.install()
    started: list[Service] = []
    for service in chosen:
        if not service.running_pids() and service.healthy():
            print(f"[stack] {service.name}: already answering at {service.address}, not started by us", flush=True)
            continue
        names_started = service.start()
        if names_started:
            print(f"[stack] {service.name}: starting {', '.join(names_started)}", flush=True)
        started.append(service)
    # Start everything first, then wait: the JVMs boot in parallel.
    for service in started:
        service.wait_ready()
        print(f"[stack] {service.name}: ready at {service.address}", flush=True)
    return status(settings, names)


def down(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Stop what ``up`` started, in reverse order; returns the process names stopped."""
    stopped: list[str] = []
    for service in reversed(services(settings, names)):
        stopped += service.stop()
    return stopped


def status(settings: Settings, names: Iterable[str] | None = None) -> list[ServiceStatus]:
    """The state of each service."""
    return [service.status() for service in services(settings, names)]
