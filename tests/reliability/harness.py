"""What the reliability tests share: private clusters, job runs, and readers of what a run left.

Not fixtures (those live in ``tests/conftest.py`` and in each test module): plain functions and
classes, so that each module decides the scope of what it starts.

* :class:`PrivateStack`: a private Kafka 4 broker and a standalone Flink cluster (1 JobManager,
  N TaskManagers) on free ports under a temporary state directory, built from the same
  :mod:`pricewave.stack` services as ``pricewave stack up``; TaskManagers get stable resource ids
  (``flink-taskmanager-<n>``) so a test can ``kill -9`` the one that runs a job and restart it with
  the same configuration, as an operator would.
* :func:`bounded_options`: the options of a bounded, deterministic test run of the pricing job.
* Readers: every record of a topic (read_committed), the decision log's rows, the online store's
  ``sku_price`` per sku.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests
import yaml
from kafka.consumer.fetcher import ConsumerRecord

from pricewave.config import Settings, load_settings
from pricewave.job import JobOptions
from pricewave.kafka_io import make_consumer
from pricewave.stack.flink import FlinkService
from pricewave.stack.kafka import KafkaService
from pricewave.stack.process import is_alive, running_pid, tail
from tests.conftest import free_port

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000

# The cluster side of a fast failover on a 2-core machine: a killed TaskManager is noticed within
# a few seconds (failed heartbeat RPCs), not after the 50 s default heartbeat timeout.
FAST_FAILOVER_CONFIG: dict[str, Any] = {
    "heartbeat.interval": 2000,
    "heartbeat.timeout": 20000,
    "heartbeat.rpc-failure-threshold": 2,
    "taskmanager.memory.process.size": "1200m",
    "taskmanager.memory.jvm-metaspace.size": "256m",  # Flink's default: these clusters run a few jobs each
    "jobmanager.memory.process.size": "900m",
    "taskmanager.numberOfTaskSlots": 2,
    "metrics.reporters": "",
}


def private_settings(
    state_dir: Path, *, taskmanagers: int = 2, feature_repo: Path | None = None, **extra: str
) -> Settings:
    """Settings for a private stack on free ports under ``state_dir``; ``extra`` adds ``PRICEWAVE_*`` variables."""
    env = {
        "PRICEWAVE_STATE_DIR": str(state_dir),
        "PRICEWAVE_KAFKA__PORT": str(free_port()),
        "PRICEWAVE_KAFKA__CONTROLLER_PORT": str(free_port()),
        "PRICEWAVE_REDIS__PORT": str(free_port()),
        "PRICEWAVE_FLINK__REST_PORT": str(free_port()),
        "PRICEWAVE_FLINK__RPC_PORT": str(free_port()),
        "PRICEWAVE_FLINK__TASKMANAGERS": str(taskmanagers),
        "PRICEWAVE_TOPICS__PARTITIONS": "1",
        **extra,
    }
    settings = load_settings(env=env)
    if feature_repo is not None:
        settings = settings.model_copy(update={"feature_repo": str(feature_repo)})
    return settings


def copy_feature_repo(applied: Path, target: Path) -> Path:
    """A private copy of an already applied feature repo (own registry and SQLite online store)."""
    shutil.copytree(applied, target)
    return target


class ReliabilityFlink(FlinkService):
    """The stack's Flink service with fast failure detection and named TaskManagers."""

    def write_config(self) -> None:
        super().write_config()
        path = self.conf_dir / "config.yaml"
        config = yaml.safe_load(path.read_text())
        config.update(FAST_FAILOVER_CONFIG)
        for key in ("metrics.reporter.prom.factory.class", "metrics.reporter.prom.port"):
            config.pop(key, None)  # no fixed metrics ports: the shared stack already holds them
        path.write_text(yaml.safe_dump(config, sort_keys=True))

    def start_process(self, process: str) -> None:
        if process == "flink-jobmanager":
            super().start_process(process)
            return
        from pricewave.stack.flink import flink_home
        from pricewave.stack.process import start_detached

        self.write_config()
        command = [
            "bash",
            str(flink_home() / "bin" / "taskmanager.sh"),
            "start-foreground",
            "-D",
            f"taskmanager.resource-id={process}",
        ]
        start_detached(
            command, pid_file=self.pid_file(process), log_file=self.log_file(process), env=self.environment()
        )


class PrivateStack:
    """A private broker and Flink cluster; :meth:`close` stops exactly what it started."""

    def __init__(self, settings: Settings, shared_jars: Path) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        jars = settings.path("jars")
        if not jars.exists():
            jars.symlink_to(shared_jars)  # the jars the shared stack already resolved
        self.kafka = KafkaService(settings)
        self.flink = ReliabilityFlink(settings)

    def start(self, *, flink: bool = True) -> PrivateStack:
        services: list[Any] = [self.kafka, self.flink] if flink else [self.kafka]
        for service in services:
            service.install()
            service.start()
        for service in services:
            wait_ready(service)
        return self

    def close(self) -> None:
        for service in (self.flink, self.kafka):
            service.stop()

    # -- operator actions -----------------------------------------------------------------------

    def taskmanager_pid(self, process: str) -> int | None:
        return running_pid(self.flink.pid_file(process), self.flink.marker)

    def kill_taskmanager(self, process: str) -> int:
        """``kill -9`` one TaskManager JVM (and its Python workers, as a dead host would lose them)."""
        pid = self.taskmanager_pid(process)
        assert pid is not None, f"{process} is not running"
        return kill_process_tree(pid)

    def restart_taskmanager(self) -> list[str]:
        """Start every TaskManager that is not running, with the same configuration."""
        return self.flink.start()

    def restart_broker(self, down_s: float = 5.0) -> None:
        """Stop the broker (SIGTERM, clean shutdown), keep it down ``down_s`` seconds, start it again."""
        self.kafka.stop()
        time.sleep(down_s)
        self.kafka.start()
        wait_ready(self.kafka)

    # -- REST -----------------------------------------------------------------------------------

    def rest(self, path: str) -> Any:
        response = requests.get(f"{self.settings.flink.rest_url}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def taskmanagers_of(self, job_id: str) -> set[str]:
        """Resource ids of the TaskManagers that run some task of ``job_id`` now."""
        hosts: set[str] = set()
        for vertex in self.rest(f"/jobs/{job_id}").get("vertices", []):
            detail = self.rest(f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")
            for tm in detail.get("taskmanagers", []):
                if tm.get("status") in ("RUNNING", "DEPLOYING", "INITIALIZING"):
                    hosts.add(str(tm.get("taskmanager-id") or tm.get("taskmanagerId")))
        return hosts

    def written_records(self, topic: str) -> int | None:
        """Records written to ``topic`` so far, committed or not (its end offsets); None while unreachable.

        Grows with the job's output across restarts (a replay after a failure writes again, into
        transactions that get aborted), so it measures progress on any machine, unlike wall time.
        """
        try:
            consumer = make_consumer(self.settings, [], read_committed=False)
            try:
                from kafka import TopicPartition

                partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
                return sum(consumer.end_offsets(partitions).values())
            finally:
                consumer.close()
        except Exception:  # the broker is being restarted: no reading this time
            return None

    def log_tails(self, lines: int = 12) -> dict[str, str]:
        """For failure messages: the last WARN and ERROR lines of each Flink process's log (Flink's
        own ``flink--*.log`` files, not the processes' stdout) and the last lines of the broker's."""
        tails = {}
        for log in sorted(self.settings.path("logs").glob("flink--*.log")):
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            flagged = [line for line in text.splitlines() if is_flagged(line)]
            tails[log.name] = "\n".join(f"  | {line[:400]}" for line in flagged[-lines:]) or "  (no WARN or ERROR)"
        tails["broker"] = tail(self.kafka.log_file(self.kafka.name), lines)
        return tails

    def completed_checkpoints(self, job_id: str) -> int:
        return int(self.rest(f"/jobs/{job_id}/checkpoints").get("counts", {}).get("completed", 0))

    def num_restarts(self, job_id: str) -> int:
        """How often the job failed and restarted: the entries of its exception history."""
        history = self.rest(f"/jobs/{job_id}/exceptions?maxExceptions=1000").get("exceptionHistory", {})
        return len(history.get("entries", []))


def is_flagged(line: str) -> bool:
    """A WARN or ERROR line of a Flink log that says something (not a metric name collision)."""
    return (" WARN " in line or " ERROR " in line) and "Name collision" not in line


def wait_ready(service: Any, timeout_s: float = 120.0) -> None:
    """``service.wait_ready()``, tolerant of a false "exited during start-up".

    Under load, :func:`pricewave.stack.process.wait_until` has reported a JVM that had just been
    started as dead (its pid file's process was running moments later, its log still empty): when
    our process still runs, wait for it to answer instead of giving up.
    """
    from pricewave.errors import StackError
    from pricewave.stack.process import wait_until

    try:
        service.wait_ready()
    except StackError:
        time.sleep(1.0)
        if not service.running_pids():
            raise
        wait_until(service.healthy, timeout_s=timeout_s, what=service.name, log_file=service.log_file(service.name))


def kill_process_tree(pid: int) -> int:
    """``kill -9`` a process and everything it started, as a lost host would lose them; wait until it is gone."""
    children = _descendants(pid)
    os.kill(pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while is_alive(pid, "") and time.monotonic() < deadline:
        time.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return pid


def run_directory(stack: Settings, base: Path, name: str, applied_repo: Path) -> tuple[Path, Path]:
    """A run's own state dir under ``base`` (sharing the stack's jars and Flink client conf) and feature repo.

    Submitting with the cluster's own client configuration (as `pricewave submit` does for the local
    stack): the conf that pricewave.flink generates for another cluster lacks env.java.opts.all, and
    `flink run` on Java 17 then fails (InaccessibleObjectException; see RELIABILITY.md).

    Returns:
        ``(state_dir, feature_repo)``.
    """
    state = base / name
    state.mkdir()
    (state / "jars").symlink_to(stack.path("jars").resolve())
    (state / "flink").mkdir()
    (state / "flink" / "conf").symlink_to(stack.path("flink", "conf"))
    repo = state / "feature_repo"
    shutil.copytree(applied_repo, repo)
    return state, repo


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def bounded_options(**changes: Any) -> JobOptions:
    """A bounded run over what the topics hold when it starts: exact watermarks, no retries."""
    run_id = uuid.uuid4().hex[:8]
    options = JobOptions(
        group_id=f"test-{run_id}",
        # Own transactional ids: another job on the same broker with the default prefix would fence
        # this one (ProducerFencedException), and the other way round.
        transactional_id_prefix=f"rel-prices-{run_id}",
        starting_offsets="earliest-offset",
        bounded=True,
        watermark_emit_strategy="on-event",
        restart_strategy="none",
        parallelism=1,
        out_of_orderness_s=5,
        window_slide_s=60,
        short_horizon_s=120,
        long_horizon_s=600,
    )
    return replace(options, **changes)


def the_job_prices_through(broker: Settings, applied_feature_repo: Path, work: Path, *, events: int) -> None:
    """Simulate ``events`` of `small` (2 % malformed) onto ``broker``, run the job bounded, check what it wrote.

    For the brokers with another listener (SCRAM, TLS): every Kafka table of the job (sources, dead
    letters, exactly-once prices) must connect through it. The client credentials are the caller's.
    """
    from pricewave.feature_store import FeatureWriter, open_store
    from pricewave.job import build_pipeline, create_table_environment
    from pricewave.simulator.runner import Simulator
    from pricewave.simulator.scenario import FaultsSpec, load_scenario

    repo = shutil.copytree(applied_feature_repo, work / "feature_repo")
    settings = fresh_topics(broker).model_copy(update={"feature_repo": str(repo)})
    faults = FaultsSpec(malformed_share=0.02, late_share=0, out_of_order_share=0, duplicate_share=0)
    simulator = Simulator(load_scenario("small"), settings, seed=5, faults=faults, review_texts=["fine"])
    FeatureWriter(open_store(settings)).write("sku_catalog", simulator.catalog_records())
    summary = simulator.run_to_kafka(rate=None, max_events=events, closed_loop=False, progress=False)
    assert summary.delivery_errors == 0

    options = bounded_options(decision_log_dir=str(work / "decisions"))
    build_pipeline(create_table_environment(settings, options), settings, options).execute().wait()

    prices = [json.loads(r.value) for r in read_topic(settings, settings.topics.prices)]
    assert prices and {"sku", "offer"} <= {d["kind"] for d in prices}
    dead_letters = read_topic(settings, settings.topics.dlq, read_committed=False)
    assert len(dead_letters) == summary.malformed > 0


def fresh_topics(
    settings: Settings, roles: Iterable[str] = ("clicks", "competitor_prices", "reviews", "prices", "dlq")
) -> Settings:
    """Settings whose topics are new, uniquely named single-partition topics."""
    from pricewave.kafka_io import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    names = {role: f"rel-{role.replace('_', '-')}-{suffix}" for role in roles}
    ensure_topics(settings, names.values(), partitions=1)
    return settings.model_copy(update={"topics": settings.topics.model_copy(update=names)})


def read_topic(
    settings: Settings, topic: str, *, read_committed: bool = True, quiet_s: float = 3.0
) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning up to its end offsets (read_committed by default).

    Under read_committed the end is the last stable offset once no transaction is open: a producer's
    ``commitTransaction`` returns before the coordinator has written the commit markers, so right
    after a job commits (a bounded job that just finished) the stable offset may still lag.
    """
    from kafka import TopicPartition

    consumer = make_consumer(
        settings, [], read_committed=read_committed, consumer_timeout_ms=500, max_partition_fetch_bytes=4 * 1024 * 1024
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        if read_committed:
            end = settled_end_offsets(settings, consumer, partitions)
        else:
            end = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                break
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def settled_end_offsets(
    settings: Settings, consumer: Any, partitions: list[Any], timeout_s: float = 30.0
) -> dict[Any, int]:
    """The read_committed consumer's end offsets once they equal the high watermarks (no transaction
    open on ``partitions``), or as they are after ``timeout_s`` (a transaction really left open)."""
    probe = make_consumer(settings, [], read_committed=False, consumer_timeout_ms=500)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            stable = consumer.end_offsets(partitions)
            if stable == probe.end_offsets(partitions) or time.monotonic() > deadline:
                return dict(stable)
            time.sleep(0.2)
    finally:
        probe.close()


def decision_log_rows(directory: Path) -> list[dict[str, Any]]:
    """The committed rows of the decision log (Flink's in-progress files start with a dot)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return rows


def sku_prices(settings: Settings, skus: Iterable[str]) -> dict[str, float | None]:
    """The online store's ``sku_price`` price of each sku (None when it holds none)."""
    from pricewave.feature_store import open_store

    store = open_store(settings)
    ordered = sorted(skus)
    response = store.get_online_features(
        features=["sku_price:price"], entity_rows=[{"sku": sku} for sku in ordered], full_feature_names=True
    ).to_dict()
    return dict(zip(ordered, response["sku_price__price"], strict=True))


def offer_prices(settings: Settings, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], float | None]:
    """The online store's ``user_offer`` price of each (user_key, sku) (None when it holds none)."""
    from pricewave.feature_store import open_store

    store = open_store(settings)
    ordered = sorted(pairs)
    response = store.get_online_features(
        features=["user_offer:price"],
        entity_rows=[{"user_key": user_key, "sku": sku} for user_key, sku in ordered],
        full_feature_names=True,
    ).to_dict()
    return dict(zip(ordered, response["user_offer__price"], strict=True))


# --- privacy scans ------------------------------------------------------------------------------

# A base64 run long enough to hide an id (12 characters: 9 bytes). Both alphabets: standard, URL-safe.
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{12,}={0,2}")
# Runs that are base64 in form only: the encoding of text has upper and lower case letters.
_NOT_BASE64_TEXT = re.compile(rb"[0-9a-f]+|[0-9A-F]+|[0-9a-z_-]+|[0-9A-Z_-]+")


def _json_strings(value: Any) -> Iterator[str]:
    """Every string in a decoded JSON value: member names, values, items, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)


def _json_documents(data: bytes) -> Iterator[Any]:
    """``data`` parsed as one JSON document, else each line that is one (JSON lines).

    Only JSON with escapes (a backslash) is parsed: in any other, every string is in the bytes as
    they are (already searched), and no JSON can be held in a string.
    """
    if b"\\" not in data:
        return
    stripped = data.strip()
    if stripped[:1] in (b"{", b"[", b'"'):
        try:
            yield json.loads(stripped)
            return
        except ValueError:
            pass
    for line in data.splitlines():
        line = line.strip()
        if line[:1] in (b"{", b"[", b'"') and b"\\" in line:
            with contextlib.suppress(ValueError):
                yield json.loads(line)


def _base64_decodings(data: bytes) -> Iterator[bytes]:
    """What each base64-looking run of ``data`` decodes to, at each of the 4 alignments."""
    for match in _BASE64_RUN.finditer(data):
        run = match.group(0)
        if _NOT_BASE64_TEXT.fullmatch(run):
            continue  # hex (user keys, hashes), digits, one lowercase word: not text in base64
        altchars = b"-_" if (b"-" in run or b"_" in run) else b"+/"
        if (b"+" in run or b"/" in run) and altchars == b"-_":
            continue  # both alphabets mixed: not base64
        body = run.rstrip(b"=")
        for shift in range(4):
            chunk = body[shift:]
            chunk = chunk[: len(chunk) // 4 * 4] if len(chunk) % 4 == 1 else chunk
            chunk += b"=" * (-len(chunk) % 4)
            with contextlib.suppress(ValueError):
                yield base64.b64decode(chunk, altchars=altchars, validate=True)


def find_raw_ids(pattern: re.Pattern[bytes], data: bytes, *, depth: int = 3) -> list[bytes]:
    """Every raw id ``pattern`` finds in ``data``, also where it is hidden by an encoding.

    Looks in the bytes as they are, in every string of the JSON they hold (a whole document or JSON
    lines: ``\\u`` escapes undone, JSON held in a JSON string parsed in turn) and in whatever each
    base64-looking run decodes to (a dead letter's ``raw_b64``, at any alignment, also inside
    binary files such as broker segments), down to ``depth`` levels of nesting.

    Args:
        pattern: What a raw id looks like, e.g. ``re.compile(rb"small-user-\\d+")``.
        data: A record's key or value, or a file's bytes.
        depth: How many layers of JSON strings / base64 to look through.

    Returns:
        The distinct matches, in the order found (empty: no raw id).
    """
    found: dict[bytes, None] = dict.fromkeys(m.group(0) for m in pattern.finditer(data))
    if depth > 0:
        inner: list[bytes] = []
        for document in _json_documents(data):
            inner.extend(text.encode("utf-8", "surrogatepass") for text in _json_strings(document))
        inner.extend(_base64_decodings(data))
        for bom, codec in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
            start = data.find(bom)  # text in UTF-16/32 from there on (a raw id in it is not ASCII bytes)
            if start >= 0:
                inner.append(data[start:].decode(codec, "replace").encode("utf-8", "surrogatepass"))
        for layer in inner:
            if layer != data:
                found.update(dict.fromkeys(find_raw_ids(pattern, layer, depth=depth - 1)))
    return list(found)
