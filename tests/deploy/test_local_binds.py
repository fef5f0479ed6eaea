"""The local stack and pricewave's own servers listen on loopback unless told otherwise.

* the configurations ``pricewave stack up`` writes: Kafka's client listener, Redis's ``bind``,
  Flink's JobManager/TaskManager bind hosts and REST address follow ``stack.bind_host``
  (default 127.0.0.1); Kafka's controller listener stays on loopback; Flink's Prometheus reporter,
  which Flink binds to every interface, is off unless ``stack.flink_prometheus`` is set;
* ``pricewave monitor`` and ``pricewave features serve`` default to 127.0.0.1;
* for real: a Redis started by the stack's service, and the monitor's server, listen on 127.0.0.1
  only (read from the kernel's socket table).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pricewave.config import Settings, load_settings
from pricewave.stack.flink import flink_config
from pricewave.stack.kafka import KafkaService
from pricewave.stack.redis import RedisService


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path), **env})


def test_stack_configurations_bind_loopback_by_default(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.stack.bind_host == "127.0.0.1"
    kafka = _properties(KafkaService(settings).server_properties())
    assert kafka["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://localhost:9093"
    assert kafka["advertised.listeners"] == "PLAINTEXT://localhost:9092"
    assert "bind 127.0.0.1" in RedisService(settings).config_text().splitlines()
    assert "protected-mode yes" in RedisService(settings).config_text().splitlines()
    flink = flink_config(settings.flink, tmp_path, "python")
    for key in ("jobmanager.bind-host", "taskmanager.bind-host", "rest.bind-address"):
        assert flink[key] == "127.0.0.1", key
    # Flink binds the Prometheus reporter to every interface: not configured unless asked for
    assert not [key for key in flink if key.startswith("metrics.reporter")]


def test_stack_bind_host_opens_them_to_other_hosts(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        PRICEWAVE_STACK__BIND_HOST="0.0.0.0",
        PRICEWAVE_STACK__FLINK_PROMETHEUS="true",
        PRICEWAVE_KAFKA__HOST="broker.example",
    )
    kafka = _properties(KafkaService(settings).server_properties())
    # the client listener on every interface, advertised by name; the controller stays on loopback
    assert kafka["listeners"] == "PLAINTEXT://0.0.0.0:9092,CONTROLLER://localhost:9093"
    assert kafka["advertised.listeners"] == "PLAINTEXT://broker.example:9092"
    assert kafka["controller.quorum.bootstrap.servers"] == "localhost:9093"
    assert "bind 0.0.0.0" in RedisService(settings).config_text().splitlines()
    flink = flink_config(
        settings.flink,
        tmp_path,
        "python",
        bind_host=settings.stack.bind_host,
        prometheus=settings.stack.flink_prometheus,
    )
    assert flink["rest.bind-address"] == flink["jobmanager.bind-host"] == "0.0.0.0"
    assert flink["metrics.reporter.prom.port"] == "9250-9260"


def test_pricewave_servers_default_to_loopback() -> None:
    from pricewave.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["monitor"]).host == "127.0.0.1"
    assert parser.parse_args(["features", "serve"]).host == "127.0.0.1"
    assert parser.parse_args(["serve"]).host == "127.0.0.1"
    assert parser.parse_args(["monitor", "--host", "0.0.0.0"]).host == "0.0.0.0"


def _listening(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    addresses = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # /proc/net prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addresses.add(socket.inet_ntop(family, raw))
    return addresses


@pytest.mark.integration
def test_a_stack_redis_and_the_monitor_listen_on_loopback_only(tmp_path: Path) -> None:
    from pricewave.monitor import Monitor, make_server
    from tests.reliability.harness import free_port, wait_ready

    if not Path("/proc/net/tcp").exists():
        pytest.fail("this check reads the kernel's socket table in /proc/net/tcp (Linux)")
    port = free_port()
    settings = _settings(tmp_path / "state", PRICEWAVE_REDIS__PORT=str(port))
    service = RedisService(settings)
    service.install()
    service.start()
    try:
        wait_ready(service, timeout_s=30)
        assert _listening(port) == {"127.0.0.1"}
    finally:
        service.stop()

    server = make_server(Monitor(settings), port=0)
    try:
        assert _listening(server.server_address[1]) == {"127.0.0.1"}
    finally:
        server.server_close()
