"""A single-node Apache Kafka 4.x broker in KRaft mode, run from Maven-resolved jars."""

from __future__ import annotations

import shutil
import subprocess
import uuid

from pricewave.errors import StackError
from pricewave.kafka_io import ensure_topics
from pricewave.stack.base import Service
from pricewave.stack.jars import ensure_jars, kafka_classpath
from pricewave.stack.process import port_open, start_detached, wait_until

# The controller listener: loopback, as "localhost" (the address a formatted KRaft log records).
CONTROLLER_HOST = "localhost"

LOG4J2_PROPERTIES = """\
status = warn
appender.file.type = Console
appender.file.name = STDOUT
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaService(Service):
    """Apache Kafka broker + controller in one process (KRaft, no ZooKeeper)."""

    name = "kafka"
    marker = "kafka.Kafka"

    def process_names(self) -> list[str]:
        return ["kafka"]

    @property
    def address(self) -> str:
        # The local broker itself, not kafka.bootstrap (which may list a shop's cluster).
        return f"{self.settings.kafka.host}:{self.settings.kafka.port}"

    def install(self) -> None:
        if shutil.which("java") is None:
            raise_missing_java()
        ensure_jars(self.settings, "kafka")

    def server_properties(self) -> str:
        """The broker's configuration, generated from settings.

        The client listener binds ``stack.bind_host`` (loopback unless set) and is advertised as
        ``kafka.host``; the controller listener is on loopback only (one node: nothing else talks to it).
        """
        kafka = self.settings.kafka
        bind = self.settings.stack.bind_host
        data_dir = self.home / "data"
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={CONTROLLER_HOST}:{kafka.controller_port}",
                f"listeners=PLAINTEXT://{bind}:{kafka.port},CONTROLLER://{CONTROLLER_HOST}:{kafka.controller_port}",
                f"advertised.listeners=PLAINTEXT://{kafka.host}:{kafka.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data_dir}",
                f"num.partitions={self.settings.topics.partitions}",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=4",
                # Flink's exactly-once KafkaSink needs this above its transaction timeout.
                f"transaction.max.timeout.ms={kafka.transaction_max_timeout_ms}",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "message.max.bytes=2097152",
                "",
            ]
        )

    def _format_storage(self) -> None:
        data_dir = self.home / "data"
        if (data_dir / "meta.properties").exists():
            return
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            "java",
            "-cp",
            kafka_classpath(self.settings),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            str(uuid.uuid4().hex[:22]),
            "--config",
            str(self.home / "server.properties"),
            "--standalone",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage in {data_dir} failed: {result.stdout}{result.stderr}".strip())

    def start_process(self, process: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "server.properties").write_text(self.server_properties())
        (self.home / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        self._format_storage()
        command = [
            "java",
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            kafka_classpath(self.settings),
            "kafka.Kafka",
            str(self.home / "server.properties"),
        ]
        start_detached(command, pid_file=self.pid_file(process), log_file=self.log_file(process))

    def healthy(self) -> bool:
        return port_open(self.settings.kafka.host, self.settings.kafka.port)

    def wait_ready(self) -> None:
        log = self.log_file("kafka")
        wait_until(
            self.healthy,
            timeout_s=self.settings.stack.start_timeout_s,
            what=f"Kafka at {self.address}",
            log_file=log,
            dead_log=self.dead_log,
        )
        # Topic creation doubles as the health check that the broker serves metadata.
        wait_until(
            self._create_topics,
            timeout_s=self.settings.stack.start_timeout_s,
            what=f"Kafka topic creation at {self.address}",
            log_file=log,
        )

    def _create_topics(self) -> bool:
        try:
            local = self.settings.kafka.model_copy(update={"bootstrap": ""})  # this broker, not a listed cluster
            created = ensure_topics(self.settings.model_copy(update={"kafka": local}))
        except StackError:
            return False
        if created:
            print(f"[stack] created topics: {', '.join(created)}", flush=True)
        return True


def raise_missing_java() -> None:
    """Raise the error for a machine without a JDK."""
    raise StackError("java is not installed: install OpenJDK 17 (apt-get install openjdk-17-jdk-headless)")
