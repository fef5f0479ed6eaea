"""A standalone Flink cluster (one JobManager, N TaskManagers) from the PyFlink package's scripts.

The scripts and jars ship inside the ``apache-flink`` wheel (``pyflink/bin``, ``pyflink/lib``);
the configuration lives under the state directory (``FLINK_CONF_DIR``), never in site-packages.
Each process runs ``start-foreground`` so the pid we record is the JVM itself.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import requests
import yaml

from pricewave.errors import StackError
from pricewave.stack.base import Service
from pricewave.stack.jars import ensure_jars
from pricewave.stack.process import child_environment, start_detached, wait_until


def flink_home() -> Path:
    """FLINK_HOME: the ``pyflink`` folder of the installed apache-flink package."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


PROMETHEUS_REPORTER = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"


def flink_config(
    settings_flink: Any,
    state_dir: Path,
    python_executable: str,
    *,
    bind_host: str = "127.0.0.1",
    prometheus: bool = False,
) -> dict[str, Any]:
    """The cluster's ``config.yaml`` (Flink 2.x reads config.yaml, not flink-conf.yaml).

    Args:
        settings_flink: The ``flink`` settings.
        state_dir: The stack's state directory (checkpoints, savepoints, temporary files).
        python_executable: The interpreter of the Python workers.
        bind_host: Where the JobManager (RPC, blob server, REST API and Web UI) and the TaskManagers
            (RPC, data exchange) listen: ``stack.bind_host``, loopback unless set.
        prometheus: Enable the Prometheus reporter (ports 9250-9260). Flink binds it to every
            interface, whatever ``bind_host`` says, hence off unless asked for
            (``stack.flink_prometheus``).
    """
    config: dict[str, Any] = {
        "jobmanager.rpc.address": "localhost",
        "jobmanager.rpc.port": settings_flink.rpc_port,
        "jobmanager.bind-host": bind_host,
        "jobmanager.memory.process.size": settings_flink.jobmanager_memory,
        "jobmanager.execution.failover-strategy": "region",
        "taskmanager.bind-host": bind_host,
        "taskmanager.host": "localhost",
        "taskmanager.numberOfTaskSlots": settings_flink.slots_per_taskmanager,
        "taskmanager.memory.process.size": settings_flink.taskmanager_memory,
        # A session cluster runs job after job in the same TaskManagers, and each PyFlink job with
        # the Kafka connector leaves classes behind: with Flink's 256 MB a TaskManager died of
        # "OutOfMemoryError: Metaspace" after a handful of jobs (the test suite, a day of upgrades).
        "taskmanager.memory.jvm-metaspace.size": settings_flink.taskmanager_metaspace,
        "parallelism.default": 1,
        "rest.address": settings_flink.rest_host,
        "rest.bind-address": bind_host,
        "rest.port": settings_flink.rest_port,
        "web.submit.enable": True,
        "web.cancel.enable": True,
        "state.checkpoints.dir": f"file://{state_dir / 'flink' / 'checkpoints'}",
        "state.savepoints.dir": f"file://{state_dir / 'flink' / 'savepoints'}",
        "execution.checkpointing.dir": f"file://{state_dir / 'flink' / 'checkpoints'}",
        "execution.checkpointing.savepoint-dir": f"file://{state_dir / 'flink' / 'savepoints'}",
        "io.tmp.dirs": str(state_dir / "flink" / "tmp"),
        # Python UDF workers run in the project's environment.
        "python.executable": python_executable,
        "python.client.executable": python_executable,
        "env.java.opts.all": default_java_opts(),
    }
    if prometheus:
        # Metrics for Prometheus (the plugin ships in pyflink/plugins/metrics-prometheus).
        config["metrics.reporter.prom.factory.class"] = PROMETHEUS_REPORTER
        config["metrics.reporter.prom.port"] = "9250-9260"
    return config


def default_java_opts() -> str:
    """The JVM flags Flink's own config.yaml ships (module opens Flink needs on Java 17)."""
    shipped = yaml.safe_load((flink_home() / "conf" / "config.yaml").read_text()) or {}
    opts = shipped.get("env", {}).get("java", {}).get("opts", {}).get("all", "")
    return str(opts)


class FlinkService(Service):
    """Flink standalone session cluster: ``standalonesession`` + N ``taskexecutor`` JVMs."""

    name = "flink"
    marker = "flink"  # matches the launcher script and, after exec, the JVM

    def process_names(self) -> list[str]:
        return ["flink-jobmanager"] + [f"flink-taskmanager-{i}" for i in range(1, self.settings.flink.taskmanagers + 1)]

    @property
    def address(self) -> str:
        return self.settings.flink.rest_url

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    def install(self) -> None:
        if shutil.which("java") is None:
            raise StackError("java is not installed: install OpenJDK 17 (apt-get install openjdk-17-jdk-headless)")
        home = flink_home()
        if not (home / "bin" / "jobmanager.sh").exists():
            raise StackError(f"the PyFlink package at {home} has no bin/jobmanager.sh: reinstall apache-flink")
        # Connector jars travel with each job (pipeline.jars), never in Flink's lib/.
        ensure_jars(self.settings, "flink")

    def write_config(self) -> None:
        """Copy Flink's logging config and write config.yaml under the state directory."""
        shipped = flink_home() / "conf"
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for name in ("log4j-console.properties", "log4j.properties", "log4j-cli.properties", "logback-console.xml"):
            if (shipped / name).exists():
                shutil.copy(shipped / name, self.conf_dir / name)
        for folder in ("checkpoints", "savepoints", "tmp"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        stack = self.settings.stack
        config = flink_config(
            self.settings.flink,
            self.settings.state_dir,
            sys.executable,
            bind_host=stack.bind_host,
            prometheus=stack.flink_prometheus,
        )
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))

    def environment(self) -> dict[str, str]:
        """Environment for Flink's scripts: where the config and logs live."""
        return child_environment(
            {
                "FLINK_HOME": str(flink_home()),
                "FLINK_CONF_DIR": str(self.conf_dir),
                "FLINK_LOG_DIR": str(self.settings.path("logs")),
                "FLINK_PID_DIR": str(self.settings.path("run", "flink")),
            }
        )

    def start_process(self, process: str) -> None:
        self.write_config()
        script = "jobmanager.sh" if process == "flink-jobmanager" else "taskmanager.sh"
        command = ["bash", str(flink_home() / "bin" / script), "start-foreground"]
        start_detached(
            command, pid_file=self.pid_file(process), log_file=self.log_file(process), env=self.environment()
        )

    def overview(self) -> dict[str, Any] | None:
        """The JobManager's ``/overview``, or None when it does not answer."""
        try:
            response = requests.get(f"{self.address}/overview", timeout=2)
            response.raise_for_status()
            return dict(response.json())
        except (requests.RequestException, ValueError):
            return None

    def healthy(self) -> bool:
        overview = self.overview()
        return overview is not None and overview.get("taskmanagers", 0) >= self.settings.flink.taskmanagers

    def wait_ready(self) -> None:
        wait_until(
            self.healthy,
            timeout_s=self.settings.stack.start_timeout_s,
            what=f"Flink at {self.address} with {self.settings.flink.taskmanagers} TaskManagers",
            log_file=self.log_file("flink-jobmanager"),
            dead_log=self.dead_log,
        )
