"""A Redis server from Debian's package, on loopback (``stack.bind_host``), for the Feast Redis profile."""

from __future__ import annotations

import os
import shutil
import subprocess

import redis as redis_client

from pricewave.errors import StackError
from pricewave.stack.base import Service
from pricewave.stack.process import child_environment, start_detached, wait_until


def ensure_redis_server() -> str:
    """Path of ``redis-server``, installing Debian's package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError("redis-server is not installed: install it (sudo apt-get install redis-server) and retry")
    print("[stack] installing redis-server with apt-get ...", flush=True)
    env = child_environment({"DEBIAN_FRONTEND": "noninteractive"})
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise StackError(f"'{' '.join(command)}' failed: {result.stderr.strip().splitlines()[-1:]}")
    found = shutil.which("redis-server")
    if not found:
        raise StackError("apt-get installed redis-server but it is not on PATH")
    return found


class RedisService(Service):
    """redis-server on ``stack.bind_host`` (loopback by default); password from PRICEWAVE_REDIS_PASSWORD when set."""

    name = "redis"
    marker = "redis-server"

    def process_names(self) -> list[str]:
        return ["redis"]

    @property
    def address(self) -> str:
        return f"{self.settings.redis.host}:{self.settings.redis.port}"

    def install(self) -> None:
        ensure_redis_server()

    def config_text(self) -> str:
        """redis.conf generated from settings, the password included when one is set.

        Persistence is on (an append-only file under the stack's Redis folder, fsync every second):
        a restarted Redis keeps the catalog and the prices, instead of every channel read failing
        closed until the catalog is loaded again.
        """
        lines = [
            # loopback unless stack.bind_host says otherwise (redis.host is where clients connect)
            f"bind {self.settings.stack.bind_host}",
            f"port {self.settings.redis.port}",
            f"dir {self.home}",
            "daemonize no",
            "save ''",
            "appendonly yes",
            "appendfsync everysec",
            "protected-mode yes",
        ]
        password = self.settings.redis.password
        if password:
            quoted = password.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'requirepass "{quoted}"')
        return "\n".join(lines) + "\n"

    def start_process(self, process: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "redis.conf"
        # The password is in the file, never on the command line (where `ps` shows it to every user):
        # the file is readable by its owner alone, from its creation on.
        config.unlink(missing_ok=True)
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self.config_text())
        command = [ensure_redis_server(), str(config)]
        start_detached(command, pid_file=self.pid_file(process), log_file=self.log_file(process))

    def client(self) -> redis_client.Redis:
        return redis_client.Redis(
            host=self.settings.redis.host,
            port=self.settings.redis.port,
            password=self.settings.redis.password,
            socket_connect_timeout=1,
        )

    def healthy(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis_client.AuthenticationError:
            raise StackError(
                f"Redis at {self.address} refused the password: set PRICEWAVE_REDIS_PASSWORD to its password"
            ) from None
        except redis_client.RedisError:
            return False

    def wait_ready(self) -> None:
        wait_until(
            self.healthy,
            timeout_s=self.settings.stack.start_timeout_s,
            what=f"Redis at {self.address}",
            log_file=self.log_file("redis"),
            dead_log=self.dead_log,
        )
