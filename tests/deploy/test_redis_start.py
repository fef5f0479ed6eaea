"""The Redis start script of deploy/docker/compose.yaml and deploy/k8s/redis.yaml, run for real.

No container runs here, so the script runs on this machine's redis-server with its container paths
swapped for temporary ones (the secret file, the config file, /data, the port). It must:

* start Redis with the password from the secret file, also one with quotes, backslashes, spaces and
  shell syntax in it, without the password in any process's command line;
* keep data across a restart (append-only file in the data directory);
* let the health check authenticate through REDISCLI_AUTH.

test_manifests.py checks that compose and k8s use this same script.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
INJECTED = Path(f"/tmp/pricewave-redis-start-{uuid.uuid4().hex}")
"""Created if the script ever ran the password as shell code."""
PASSWORD = f'pw "quoted" \\back\\slash $(touch {INJECTED}) `touch {INJECTED}` ;'

pytestmark = pytest.mark.integration


def _compose_redis() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "deploy" / "docker" / "compose.yaml").read_text())["services"]["redis"])


class Local:
    """The container's paths, swapped for a temporary folder and a free port."""

    def __init__(self, tmp: Path) -> None:
        self.secret, self.conf, self.data = tmp / "secret", tmp / "redis.conf", tmp / "data"
        self.port = free_port()
        self.data.mkdir()
        self.secret.write_text(PASSWORD + "\n")  # as `kubectl create secret --from-file` may leave it
        self.secret.chmod(0o400)

    def __call__(self, script: str) -> str:
        script = script.replace("$$", "$")  # compose's escape for a literal $
        script = script.replace("/run/secrets/redis_password", str(self.secret))
        script = script.replace("/tmp/redis.conf", str(self.conf)).replace("'dir /data'", f"'dir {self.data}'")
        script = script.replace("chown redis:redis", ": chown")  # the image's user; the test runs as itself
        script = script.replace(
            "exec docker-entrypoint.sh redis-server " + str(self.conf),
            f"exec {shutil.which('redis-server')} {self.conf} --port {self.port} --bind 127.0.0.1",
        )
        return script.replace("redis-cli ping", f"redis-cli -p {self.port} ping")


@pytest.fixture
def local(tmp_path: Path) -> Local:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("redis-server and redis-cli are needed (apt-get install redis-server)")
    return Local(tmp_path)


@pytest.fixture
def start(local: Local) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def run() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["sh", "-c", local(_compose_redis()["command"][2])])
        started.append(process)
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=local.port, password=PASSWORD, socket_connect_timeout=1).ping()
                return process
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)

    yield run
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def _command_lines() -> list[bytes]:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes())
        except OSError:  # the process ended meanwhile
            continue
    return lines


def test_redis_starts_with_the_secret_files_password_and_never_shows_it(local: Local, start: Any) -> None:
    process = start()
    client = redis.Redis(port=local.port, password=PASSWORD)
    assert client.ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=local.port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=local.port, password=PASSWORD + "x").ping()
    # exec: the script's shell became redis-server (which then shows its own title as argv)
    server = shutil.which("redis-server")
    assert server and Path(f"/proc/{process.pid}/cmdline").read_bytes().startswith(server.encode())
    assert not [line for line in _command_lines() if PASSWORD.encode() in line or b'pw "quoted' in line]
    assert not INJECTED.exists(), "the password was run as shell code"
    assert local.conf.stat().st_mode & 0o077 == 0, "the generated config is readable by others"
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("dir") == {"dir": str(local.data)}

    # the health check of compose and the readiness probe of k8s (same command) authenticate
    probe = local(_compose_redis()["healthcheck"]["test"][1])
    assert subprocess.run(["sh", "-c", probe], check=False).returncode == 0


def test_redis_keeps_its_data_across_a_restart(local: Local, start: Any) -> None:
    process = start()
    client = redis.Redis(port=local.port, password=PASSWORD)
    client.hset("catalog:sku-1", mapping={"base_price": "9.50"})
    process.terminate()  # as `docker compose restart` / a rescheduled pod: SIGTERM
    assert process.wait(timeout=20) == 0
    assert list(local.data.rglob("*.aof*")), "no append-only file in the data directory"

    start()
    assert redis.Redis(port=local.port, password=PASSWORD).hgetall("catalog:sku-1") == {b"base_price": b"9.50"}
