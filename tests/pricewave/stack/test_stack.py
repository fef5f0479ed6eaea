"""`pricewave stack up | down | status` on its own ports and state directory.

These start a second, private stack (one TaskManager) so the session-wide one keeps running.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pricewave import stack
from pricewave.config import Settings
from pricewave.errors import StackError
from pricewave.kafka_io import make_admin
from pricewave.stack.process import is_alive
from tests.reliability.harness import private_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def private_stack(tmp_path: Path, settings: Settings) -> Iterator[Settings]:
    private = private_settings(tmp_path / "state", taskmanagers=1)
    # Share the already resolved jars instead of asking Maven again.
    (private.state_dir).mkdir(parents=True)
    (private.state_dir / "jars").symlink_to(settings.path("jars"))
    yield private
    stack.down(private)


def test_up_is_idempotent_status_reports_and_down_stops_only_ours(private_stack: Settings) -> None:
    first = {s.name: s for s in stack.up(private_stack)}
    assert {name: s.state for name, s in first.items()} == {"kafka": "running", "redis": "running", "flink": "running"}
    assert len(first["flink"].pids) == 2  # JobManager + one TaskManager

    # Up twice: nothing restarted.
    second = {s.name: s for s in stack.up(private_stack)}
    assert {name: s.pids for name, s in second.items()} == {name: s.pids for name, s in first.items()}

    # Every part answers its clients.
    overview = requests.get(f"{private_stack.flink.rest_url}/overview", timeout=5).json()
    assert overview["taskmanagers"] == 1
    admin = make_admin(private_stack)
    assert set(private_stack.topics.all_names()) <= set(admin.list_topics())
    admin.close()

    # The CLI prints the table.
    result = subprocess.run(
        [sys.executable, "-m", "pricewave", "stack", "status"],
        capture_output=True,
        text=True,
        env={"PRICEWAVE_STATE_DIR": str(private_stack.state_dir), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr

    stopped = stack.down(private_stack)
    assert sorted(stopped) == ["flink-jobmanager", "flink-taskmanager-1", "kafka", "redis"]
    for status in first.values():
        for pid in status.pids:
            assert not is_alive(pid, "")
    assert {s.state for s in stack.status(private_stack)} == {"stopped"}
    assert stack.down(private_stack) == []  # down twice is fine


def test_service_started_elsewhere_is_used_not_stopped(tmp_path: Path) -> None:
    private = private_settings(tmp_path / "state", taskmanagers=1)
    port = private.redis.port
    external = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        from pricewave.stack.process import wait_until

        redis_service = stack.services(private, ["redis"])[0]
        wait_until(redis_service.healthy, timeout_s=10, what="external redis", log_file=tmp_path / "none")
        statuses = stack.up(private, ["redis"])
        assert statuses[0].state == "external"
        assert stack.down(private, ["redis"]) == []
        assert external.poll() is None  # still running: not ours to stop
    finally:
        external.terminate()
        external.wait()


def test_failed_start_names_the_log(tmp_path: Path, settings: Settings) -> None:
    private = private_settings(tmp_path / "state", taskmanagers=1, PRICEWAVE_FLINK__TASKMANAGER_MEMORY="64m")
    private.state_dir.mkdir(parents=True)
    try:
        with pytest.raises(StackError, match=r"exited during start-up; see .*flink-taskmanager-1.log"):
            stack.up(private, ["flink"])
    finally:
        stack.down(private, ["flink"])


def test_unknown_service_is_a_config_error(settings: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pricewave", "stack", "up", "--only", "zookeeper"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown stack service zookeeper" in result.stderr
