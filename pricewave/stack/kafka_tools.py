"""Apache Kafka's console tools (``kafka-topics``, ``kafka-console-consumer``, ...) from the stack's jars.

The same ``kafka-tools`` jars Maven resolves for the local broker (``deploy/local/pom.xml``), run
with ``java -cp`` against the configured brokers: ``--bootstrap-server`` comes from
``kafka.bootstrap`` (else the local broker) unless given, and with TLS or SASL configured the
client properties go in a private file (mode 0600, removed afterwards) passed as the tool's config
option, so no password is ever on a command line.

Example:
    >>> from pricewave.config import Settings
    >>> tool_command(Settings(), "topics", ["--list"], classpath="jars/*")[-4:]
    ['org.apache.kafka.tools.TopicCommand', '--bootstrap-server', 'localhost:9092', '--list']
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pricewave.config import Settings
from pricewave.errors import ConfigError
from pricewave.kafka_io import flink_security_properties
from pricewave.stack.jars import kafka_classpath
from pricewave.stack.kafka import raise_missing_java


@dataclass(frozen=True)
class KafkaTool:
    """One console tool: its main class and the option that takes a client properties file."""

    main_class: str
    config_option: str
    summary: str


TOOLS: dict[str, KafkaTool] = {
    "topics": KafkaTool(
        "org.apache.kafka.tools.TopicCommand", "--command-config", "kafka-topics: list, describe, create, alter topics"
    ),
    "console-consumer": KafkaTool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--consumer.config",
        "kafka-console-consumer: print a topic's records",
    ),
    "console-producer": KafkaTool(
        "org.apache.kafka.tools.ConsoleProducer",
        "--producer.config",
        "kafka-console-producer: send stdin's lines as records",
    ),
    "consumer-groups": KafkaTool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--command-config",
        "kafka-consumer-groups: list groups, describe offsets and lag, reset offsets",
    ),
    "get-offsets": KafkaTool(
        "org.apache.kafka.tools.GetOffsetShell", "--command-config", "kafka-get-offsets: a topic's offsets"
    ),
}

# The tools log through log4j2: warnings only, on stderr, so stdout holds just what the tool prints.
LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
"""


def tool_command(
    settings: Settings,
    tool: str,
    args: Sequence[str],
    *,
    classpath: str,
    config_file: Path | None = None,
    log_config: Path | None = None,
) -> list[str]:
    """The ``java`` command line that runs ``tool`` with ``args``.

    Raises:
        ConfigError: ``tool`` is not one of ``TOOLS``.
    """
    if tool not in TOOLS:
        raise ConfigError(f"unknown Kafka tool {tool!r}: choose one of {', '.join(TOOLS)}")
    spec = TOOLS[tool]
    command = ["java"]
    if log_config is not None:
        command.append(f"-Dlog4j2.configurationFile={log_config}")
    command += ["-cp", classpath, spec.main_class]
    if not any(arg == "--bootstrap-server" or arg.startswith("--bootstrap-server=") for arg in args):
        command += ["--bootstrap-server", settings.kafka.bootstrap_servers]
    if config_file is not None:
        command += [spec.config_option, str(config_file)]
    return [*command, *args]


def run_tool(settings: Settings, tool: str, args: Sequence[str]) -> int:
    """Run a console tool in the foreground (stdin, stdout and stderr are the caller's); its exit code.

    Raises:
        ConfigError: Unknown tool, or a security setting that is incomplete.
        StackError: No ``java``, or the jars cannot be resolved (Maven missing or offline).
    """
    if shutil.which("java") is None:
        raise_missing_java()
    security = flink_security_properties(settings)
    with tempfile.TemporaryDirectory(prefix="pricewave-kafka-") as folder:
        log_config = Path(folder) / "log4j2.properties"
        log_config.write_text(LOG4J2_PROPERTIES)
        config_file = write_client_properties(Path(folder) / "client.properties", security) if security else None
        command = tool_command(
            settings, tool, args, classpath=kafka_classpath(settings), config_file=config_file, log_config=log_config
        )
        try:
            return subprocess.run(command, check=False).returncode
        except KeyboardInterrupt:  # Ctrl-C ends a console consumer: not an error
            return 130


def write_client_properties(path: Path, properties: dict[str, str]) -> Path:
    """Write Java client properties to a new file only its owner can read (it may hold a password)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.writelines(f"{key}={_escape(value)}\n" for key, value in properties.items())
    return path


def _escape(value: str) -> str:
    """A value for a Java properties file (backslashes are escapes there)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")
